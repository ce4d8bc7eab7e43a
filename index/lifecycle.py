"""After ``add``: yanking a release, and removing one that was never published.

Why it exists: ``index add`` could not be undone and nothing could be withdrawn. Here, as
PyPI does it:

- ``yank`` marks every platform's build of a version ``"yanked": true`` (with an optional
  ``"yanked_reason"``) in the artifact targets' ``custom`` fields and in the plugin's
  ``releases.json``; the files stay, so an install pinned to it (``NAME==VERSION``,
  ``install --locked``) still gets it, with a warning, but no range and no "newest" picks
  it (:mod:`registry_client.resolve`). ``unyank`` takes the mark away. Both change signed
  metadata: the next ``publish`` signs it (a delegated plugin's role is signed at once,
  with its publisher's key, as ``add`` does).
- ``remove`` takes a version out of the index before it is published. A published one is
  refused (clients may have it pinned: yank it) unless ``force``, which is for taking down
  a release that must not be installed at all, pins included; its version is then retired
  in ``<repo>/retired.json`` and never accepted by ``add`` again, so ``NAME==VERSION``
  cannot come to mean other bytes. Its files go at the next ``gc``.

Each is all-or-nothing (:func:`index.repo_base._all_or_nothing`). A mixin of
:class:`index.repository.IndexRepo`, on top of :class:`index.releases.ReleasesMixin`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.version import InvalidVersion, Version

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from index import paths
from index.errors import IndexRepoError
from index.gc import published_targets
from index.keyring import tuf_signer
from index.releases import ReleasesMixin
from index.repo_base import _all_or_nothing, _canonical, _now, _part, _write_file
from keys import ed25519, strict_json
from keys.errors import KeysError

__all__ = ["MAX_REASON", "RETIRED_FILE", "LifecycleMixin"]

MAX_REASON = paths.MAX_YANK_REASON
RETIRED_FILE = "retired.json"


_YANK = ("yanked", "yanked_reason")


def _yank_fields(custom: dict[str, Any]) -> dict[str, Any]:
    return {k: custom[k] for k in _YANK if k in custom}


def _same_version(a: Any, b: str) -> bool:
    if not isinstance(a, str):
        return False
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


class LifecycleMixin(ReleasesMixin):
    """``yank``, ``unyank`` and ``remove_release``."""

    def _version_entries(
        self, name: str, version: str
    ) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        """The checked name's ``releases.json`` path, all its entries, and those of
        ``version`` (refused when there are none)."""
        where = f"{name} {version}"
        name = _part(paths.check_name, name, where)
        _part(paths.check_version, version, where)
        rpath = paths.releases_path(name)
        entries = self._release_entries(self._lookup(rpath), rpath)
        mine = [
            e for e in entries if _same_version(e["artifact"]["custom"].get("version"), version)
        ]
        if not mine:
            raise IndexRepoError(f"{where} is not in the index")
        return rpath, entries, mine

    def _signing_for(
        self, name: str, publisher_keys: Sequence[Ed25519PrivateKey]
    ) -> tuple[str, list[Ed25519PrivateKey]] | None:
        """For a delegated plugin, its role and the given keys that sign it (none refused)."""
        delegation = self.delegation_for(name)
        if delegation is None:
            return None
        keys_by_id = {ed25519.key_id(k): k for k in publisher_keys}
        return delegation.role, self._publisher_signing(name, delegation, keys_by_id)

    @_all_or_nothing
    def yank(
        self,
        name: str,
        version: str,
        *,
        reason: str = "",
        yanked: bool = True,
        publisher_keys: Sequence[Ed25519PrivateKey] = (),
        now: datetime | None = None,
    ) -> bool:
        """Mark every build of ``name`` ``version`` yanked (``yanked=False``: not yanked);
        returns False when it already was so (nothing changes)."""
        moment = _now(now)
        where = f"{name} {version}"
        if len(reason) > MAX_REASON or any(not ch.isprintable() for ch in reason):
            raise IndexRepoError(f"{where}: the reason must be printable, {MAX_REASON} at most")
        if reason and not yanked:
            raise IndexRepoError(f"{where}: a reason goes with yank, not unyank")
        _, entries, mine = self._version_entries(name, version)
        wanted: dict[str, Any] = {"yanked": True} if yanked else {}
        if reason:
            wanted["yanked_reason"] = reason
        if all(_yank_fields(e["artifact"]["custom"]) == wanted for e in mine):
            return False
        signing = self._signing_for(name, publisher_keys)
        for entry in mine:
            custom = {k: v for k, v in entry["artifact"]["custom"].items() if k not in _YANK}
            custom.update(wanted)
            entry["artifact"]["custom"] = custom
            apath = entry["artifact"]["path"]
            old = self._lookup(apath)
            if old is None:
                raise IndexRepoError(f"target {apath} is missing; the index is damaged")
            new = TargetFile(old.length, dict(old.hashes), apath, {"custom": custom})
            self._edit_targets(self._role_for(apath)).targets[apath] = new
        self._write_release_lists({paths.check_name(name): entries})
        if signing is not None:
            self._sign(signing[0], [tuf_signer(k) for k in signing[1]], moment)
        self._flush()
        return True

    @_all_or_nothing
    def remove_release(
        self,
        name: str,
        version: str,
        *,
        force: bool = False,
        publisher_keys: Sequence[Ed25519PrivateKey] = (),
        now: datetime | None = None,
    ) -> list[str]:
        """Take every build of ``name`` ``version`` out of the index (not yet published,
        or ``force``); returns the target paths removed."""
        moment = _now(now)
        rpath, entries, mine = self._version_entries(name, version)
        gone = [p for e in mine for p in (e["artifact"]["path"], e["manifest"]["path"])]
        published = published_targets(self.tree)
        if not force and any(p in published for p in gone):
            raise IndexRepoError(
                f"{name} {version} is published, and published releases are yanked, not"
                " removed: clients may have it pinned (pm-plugins index yank; remove --force"
                " only takes down a release nobody may install)"
            )
        signing = self._signing_for(name, publisher_keys)
        for target_path in gone:
            self._edit_targets(self._role_for(target_path)).targets.pop(target_path, None)
        rest = [e for e in entries if e not in mine]
        if rest:
            self._write_release_lists({paths.check_name(name): rest})
        else:
            self._edit_targets(self._role_for(rpath)).targets.pop(rpath, None)
        if any(p in published for p in gone):
            self._retire(name, version, moment)
        if signing is not None:
            self._sign(signing[0], [tuf_signer(k) for k in signing[1]], moment)
        self._flush()
        return gone

    # -- retired versions -------------------------------------------------------------------

    def _retired(self) -> list[dict[str, str]]:
        file = self.path / RETIRED_FILE
        if not file.exists():
            return []
        try:
            doc = strict_json.load(file, source=str(file))
            found = strict_json.require(doc, "retired", list, where=str(file))
            for item in found:
                strict_json.expect(item, dict, where=str(file), what="an entry")
                strict_json.require(item, "name", str, where=str(file))
                strict_json.require(item, "version", str, where=str(file))
        except KeysError as e:
            raise IndexRepoError(f"{e}; the list of retired versions is damaged") from e
        return list(found)

    def _retire(self, name: str, version: str, moment: datetime) -> None:
        found = self._retired()
        found.append({"name": name, "version": version, "at": moment.isoformat()})
        _write_file(self.path / RETIRED_FILE, _canonical({"format": 1, "retired": found}))

    def _check_not_retired(self, name: str, version: str) -> None:
        """``add`` of a version removed after it was published is refused."""
        for item in self._retired():
            if item["name"] == name and _same_version(item["version"], version):
                raise IndexRepoError(
                    f"{name} {version} was removed after it was published; its version is"
                    " retired and never used again (publish a new version)"
                )
