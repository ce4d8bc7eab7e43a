"""Garbage collection of the published index: what no recent metadata version references.

Why it exists: every ``publish`` adds versioned metadata (``N.snapshot.json``,
``N.targets.json``, ...) and, for every change of a release list, a new ``releases.json``
target; a removed release leaves its files behind. Nothing was ever cleaned up. ``gc``
deletes, from ``published/`` and the repository's ``blobs/``, what no snapshot a client may
still hold references, after a grace period (so a client that fetched an older snapshot a
while ago still finds its files, and CDN caches drain). It is a mixin of
:class:`index.repository.IndexRepo` typed against :class:`index.repo_base.RepoBase`, and
runs under the repository's lock, so never during a ``publish``.

When each snapshot version was published is recorded by ``publish`` in
``<repo>/publish-history.json`` (``{"format": 1, "snapshots": {"N": "ISO time"}}``; file
times are not used: copies and object stores lose them). A snapshot is *kept* when it is
the one ``timestamp.json`` names, newer than that (an interrupted publish), or superseded
less than the grace period ago; it was superseded when the next recorded snapshot version
was published (a version without a record takes the next record's time, which can only be
later: the rule errs on keeping). A damaged or missing history keeps every old snapshot.

Kept: every ``N.root.json`` (clients walk the root chain), ``root.json``,
``timestamp.json``; every kept snapshot, each role version it lists and each target those
list; role versions not older than the current snapshot's; files ``gc`` does not know.
Deleted: other ``N.<role>.json`` and ``N.snapshot.json``, target files no kept role lists,
and blobs that neither a kept role nor the repository's own (maybe unpublished) metadata
lists. A kept file that cannot be read, or ``published/targets`` or ``blobs`` being a symbolic
link, stops ``gc`` before it deletes anything.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError

from index.errors import IndexRepoError
from index.publish import PublishedTree
from index.repo_base import RepoBase, _canonical, _now, _write_file

__all__ = [
    "HISTORY_FILE",
    "GcMixin",
    "GcResult",
    "current_snapshot",
    "published_targets",
    "record_publication",
]

HISTORY_FILE = "publish-history.json"
_VERSIONED = re.compile(r"(?P<version>[1-9][0-9]{0,18})\.(?P<role>.+)\.json")
_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class GcResult:
    """What ``gc`` deleted (or would, with ``dry_run``): paths relative to the repository."""

    deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept_snapshots: list[int] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "deleted": list(self.deleted),
            "bytes_freed": self.bytes_freed,
            "kept_snapshots": list(self.kept_snapshots),
            "dry_run": self.dry_run,
        }


# -- the history ---------------------------------------------------------------------------


def _history(repo_path: Path) -> dict[int, datetime]:
    """Snapshot version -> when it was first published; {} if absent or damaged."""
    try:
        doc = json.loads((repo_path / HISTORY_FILE).read_bytes())
        return {
            int(v): datetime.strptime(t, _TIME).replace(tzinfo=UTC)
            for v, t in doc["snapshots"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save_history(repo_path: Path, history: dict[int, datetime]) -> None:
    doc = {"format": 1, "snapshots": {str(v): t.strftime(_TIME) for v, t in history.items()}}
    _write_file(repo_path / HISTORY_FILE, _canonical(doc))


def record_publication(repo_path: Path, snapshot_version: int, moment: datetime) -> None:
    """Note that ``snapshot_version`` is published as of ``moment`` (the first time only);
    ``publish`` calls it once ``timestamp.json`` names that version."""
    history = _history(repo_path)
    if snapshot_version not in history:
        history[snapshot_version] = moment
        _save_history(repo_path, history)


# -- reading what is published --------------------------------------------------------------


def _read(tree: PublishedTree, filename: str) -> Metadata[Any]:
    data = tree.read_metadata(filename)
    if data is None:
        raise IndexRepoError(f"{tree.metadata / filename} is missing; nothing was deleted")
    try:
        return Metadata.from_bytes(data)
    except DeserializationError as e:
        raise IndexRepoError(f"{tree.metadata / filename} is not TUF metadata") from e


def current_snapshot(tree: PublishedTree) -> int | None:
    """The snapshot version the published ``timestamp.json`` names; None before publish."""
    if tree.read_metadata("timestamp.json") is None:
        return None
    timestamp = _read(tree, "timestamp.json").signed
    assert isinstance(timestamp, Timestamp)
    return int(timestamp.snapshot_meta.version)


def _snapshot_roles(tree: PublishedTree, version: int) -> dict[str, int]:
    """Role -> version as published snapshot ``version`` lists them."""
    snapshot = _read(tree, f"{version}.snapshot.json").signed
    assert isinstance(snapshot, Snapshot)
    return {name.removesuffix(".json"): meta.version for name, meta in snapshot.meta.items()}


def _role_targets(tree: PublishedTree, role: str, version: int) -> Iterator[tuple[str, str]]:
    """(target path, sha256) of every target published role version lists."""
    targets = _read(tree, f"{version}.{role}.json").signed
    if not isinstance(targets, Targets):
        raise IndexRepoError(f"{version}.{role}.json is not targets metadata")
    for target_path, tf in targets.targets.items():
        yield target_path, tf.hashes["sha256"]


def published_targets(tree: PublishedTree) -> set[str]:
    """The target paths the published index lists now (empty before the first publish)."""
    current = current_snapshot(tree)
    if current is None:
        return set()
    out: set[str] = set()
    for role, version in _snapshot_roles(tree, current).items():
        out.update(p for p, _ in _role_targets(tree, role, version))
    return out


# -- collecting ----------------------------------------------------------------------------


class GcMixin(RepoBase):
    """``gc``: delete what no kept snapshot and no stored metadata references."""

    def gc(
        self, *, grace_days: int = 7, dry_run: bool = False, now: datetime | None = None
    ) -> GcResult:
        """Delete old metadata versions, targets and blobs (module docstring: which)."""
        if type(grace_days) is not int or not 0 <= grace_days <= 3650:
            raise IndexRepoError("the grace period is a whole number of days from 0 to 3650")
        moment = _now(now)
        tree = self.tree
        current = current_snapshot(tree)
        result = GcResult(dry_run=dry_run)
        target_keep: set[str] = set()
        blob_keep: set[str] = {
            tf.hashes["sha256"]
            for role, _ in self.targets_roles()
            for tf in self._targets_md(role).signed.targets.values()
        }
        if current is not None:
            kept = self._kept_snapshots(current, moment, timedelta(days=grace_days))
            result.kept_snapshots = sorted(kept)
            floor = _snapshot_roles(tree, current)
            listed = {(r, v) for s in kept for r, v in _snapshot_roles(tree, s).items()}
            metadata_keep = {f"{s}.snapshot.json" for s in kept}
            metadata_keep |= {f"{v}.{r}.json" for r, v in listed}
            for role, role_version in sorted(listed):
                for target_path, sha in _role_targets(tree, role, role_version):
                    target_keep.add(tree.target_file(target_path, sha).as_posix())
                    blob_keep.add(sha)
            doomed = self._doomed_metadata(current, floor, metadata_keep)
            doomed += [p for p in _files(tree.targets) if p.as_posix() not in target_keep]
        else:
            doomed = []
        doomed += [p for p in _files(self.path / "blobs") if p.name not in blob_keep]
        for path in doomed:
            result.deleted.append(path.relative_to(self.path).as_posix())
            result.bytes_freed += path.stat().st_size
            if not dry_run:
                path.unlink()
        if not dry_run:
            _prune_dirs(tree.targets)
            if current is not None:
                oldest = min(result.kept_snapshots)
                history = _history(self.path)
                _save_history(self.path, {v: t for v, t in history.items() if v >= oldest})
        return result

    def _kept_snapshots(self, current: int, moment: datetime, grace: timedelta) -> set[int]:
        """The published snapshot versions a client may still hold (module docstring)."""
        history = _history(self.path)
        kept = set()
        for file in self.tree.metadata.glob("*.snapshot.json"):
            found = _VERSIONED.fullmatch(file.name)
            if found is None:
                continue
            version = int(found["version"])
            later = [t for v, t in history.items() if v > version]
            superseded = min(later) if later else None
            if version >= current or superseded is None or moment - superseded < grace:
                kept.add(version)
        return kept

    def _doomed_metadata(self, current: int, floor: dict[str, int], keep: set[str]) -> list[Path]:
        """Versioned metadata files no kept snapshot lists, older than the current ones."""
        doomed = []
        for file in sorted(self.tree.metadata.iterdir()):
            found = _VERSIONED.fullmatch(file.name)
            if found is None or not file.is_file() or file.name in keep:
                continue
            role, version = found["role"], int(found["version"])
            newest = current if role == "snapshot" else floor.get(role, 0)
            if role != "root" and version < newest:
                doomed.append(file)
        return doomed


def _files(folder: Path) -> list[Path]:
    """The regular files under ``folder``, sorted; temporary (dot) files are left alone. A
    ``folder`` that is a symbolic link is refused: gc deletes nothing through one."""
    if folder.is_symlink():
        raise IndexRepoError(f"{folder} is a symbolic link; nothing was deleted")
    if not folder.is_dir():
        return []
    out = []
    for base, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(base) / n for n in sorted(names) if not n.startswith(".")]
    return [p for p in out if p.is_file() and not p.is_symlink()]


def _prune_dirs(folder: Path) -> None:
    """Remove folders left empty under ``folder`` (deepest first)."""
    if not folder.is_dir():
        return
    for base, _, _ in os.walk(folder, topdown=False):
        if Path(base) != folder and not os.listdir(base):
            os.rmdir(base)
