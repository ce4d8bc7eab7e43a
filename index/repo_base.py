"""What the parts of :class:`index.repository.IndexRepo` share: helpers and a typed outline.

Why it exists: ``IndexRepo`` is assembled from mixins by role (:mod:`index.roles`,
:mod:`index.releases`, :mod:`index.publishing`) on top of the state and stored metadata
kept in :mod:`index.repository`. Each mixin calls methods defined in the others; the
:class:`RepoBase` protocol declares those attributes and methods once so that every
mixin type-checks on its own, and the small helpers (time, hashing, atomic writes,
canonical JSON, the all-or-nothing rule for changes) live here for all of them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

# python-tuf and securesystemslib re-export these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)

from index import paths
from index.errors import IndexRepoError
from index.keystore import KeyStore
from index.model import Delegation, ExpiryPolicy
from index.publish import PublishedTree

# -- helpers ---------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    moment = datetime.now(UTC) if now is None else now
    if moment.tzinfo is None:
        raise ValueError("pass an aware datetime")
    return moment.astimezone(UTC).replace(microsecond=0)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` (temp file + rename; the command syncs once at the end)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _canonical(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _part(check: Callable[[str], str], value: str, where: str) -> str:
    try:
        return check(value)
    except paths.PathPartError as e:
        raise IndexRepoError(f"{where}: {e}") from None


def _target_dict(tf: TargetFile) -> dict[str, Any]:
    return {"path": tf.path, "length": tf.length, "hashes": dict(tf.hashes)}


# -- the outline every mixin is typed against ------------------------------------------------


class RepoBase(Protocol):
    """The attributes and methods of :class:`index.repository.IndexRepo` that its mixins
    use across modules. Each is defined once, in the module named beside it."""

    # state (index.repository)
    path: Path
    expiry: ExpiryPolicy
    keyring: KeyStore
    tree: PublishedTree
    _md: dict[str, Metadata[Any]]
    _unsaved: set[str]
    _removed: set[str]

    # stored metadata (index.repository)
    def _load(self, role: str) -> Metadata[Any]: ...
    def _root_md(self) -> Metadata[Root]: ...
    def _targets_md(self, role: str) -> Metadata[Targets]: ...
    def _snapshot_md(self) -> Metadata[Snapshot]: ...
    def _timestamp_md(self) -> Metadata[Timestamp]: ...
    def _put(self, role: str, md: Metadata[Any]) -> None: ...
    def _edit(self, role: str) -> Metadata[Any]: ...
    def _edit_targets(self, role: str) -> Targets: ...
    def _drop(self, role: str) -> None: ...
    def _next_version(self, role: str) -> int: ...
    def _save_root(self, md: Metadata[Root]) -> None: ...
    def _flush(self) -> None: ...
    def root_bytes(self, version: int | None = None) -> bytes: ...
    def role_version(self, role: str) -> int: ...

    # keys and roles (index.roles)
    def hash_bins(self) -> int: ...
    def _bins_succinct(self) -> SuccinctRoles: ...
    def targets_roles(self) -> list[tuple[str, str]]: ...
    def delegation_for(self, name: str) -> Delegation | None: ...
    def role_signers(self, role: str) -> list[Signer]: ...
    def _is_maintainer_role(self, role: str) -> bool: ...
    def _sign(self, role: str, signers: Sequence[Signer], now: datetime) -> None: ...
    def _signing_role(self, role: str) -> tuple[list[str], int]: ...
    def _delegator_of(self, role: str) -> Root | Targets: ...
    def _next_root(self, change: Callable[[Root], None], now: datetime) -> Metadata[Root]: ...
    def _new_root(
        self,
        change: Callable[[Root], None],
        now: datetime,
        after: Mapping[str, Any] | None = None,
    ) -> Metadata[Root] | None: ...
    def _after_rotation(self, role: str, old_ids: Sequence[str], threshold: int) -> None: ...
    def _retire_unused(self, old_ids: Sequence[str]) -> None: ...

    # offline signatures (index.offline)
    def _refuse_if_root_staged(self) -> None: ...

    # releases and targets (index.releases)
    def _lookup(self, target_path: str) -> TargetFile | None: ...
    def blob_path(self, tf: TargetFile) -> Path: ...

    # lifecycle (index.lifecycle)
    def _check_not_retired(self, name: str, version: str) -> None: ...

    # publishing (index.publishing)
    def _near_expiry(self, role: str, now: datetime) -> bool: ...
    def _signing_due(self, role: str, changed: bool, now: datetime) -> bool: ...


_P = ParamSpec("_P")
_R = TypeVar("_R")
_Repo = TypeVar("_Repo", bound=RepoBase)


def _all_or_nothing(
    method: Callable[Concatenate[_Repo, _P], _R],
) -> Callable[Concatenate[_Repo, _P], _R]:
    """A change that fails leaves the repository as it was on disk: the metadata held in
    memory is dropped (files are written only at the end of a successful change)."""

    @functools.wraps(method)
    def wrapper(self: _Repo, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self._md.clear()
            self._unsaved.clear()
            self._removed.clear()
            raise

    return wrapper
