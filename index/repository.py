"""The maintainer's TUF repository on disk: keys, signed metadata, target contents.

Why it exists: ``pm-plugins index`` commands each open the repository, change it and
leave it consistent; this module is that state: opening, locking and creating a
repository, and loading and saving its metadata. :class:`IndexRepo` gets its commands
from mixins by role: keys and roles (:mod:`index.roles`, :mod:`index.signing`),
releases and targets (:mod:`index.releases`), known publishers (:mod:`index.publishers`),
yank and remove (:mod:`index.lifecycle`), publishing (:mod:`index.publishing`) and garbage
collection (:mod:`index.gc`);
its plain data is :mod:`index.model`, re-exported here. Publishing the result as static
files is :mod:`index.publish`; the CLI is ``cli.index``.

Layout of a repository folder::

    index.json                 format and expiry policy (days per role)
    keys/<key id>.key          encrypted private keys (each with its role's passphrase)
    keys/keys.json             each key's role and URI, or where it is kept offline
    staged/<role>.json         a role waiting for offline signatures (index.offline)
    metadata/root_history/N.root.json, metadata/root.json    every signed root
    metadata/<role>.json       the current metadata of every other role
    blobs/<sha256>             target contents, by hash
    publishers.json            publisher keys known per plugin name (index.publishers)
    publish-history.json       when each snapshot version was published (index.gc)
    retired.json               versions removed after publishing, never reused
    published/metadata, published/targets                    what ``publish`` writes

Roles are described in :mod:`index.roles`; target paths and the ``custom`` fields in
:mod:`index.paths` and :class:`ReleaseInfo`.

Signing rule: a role whose stored metadata has signatures is unchanged since it was
signed. The first change after signing bumps its version and drops the signatures;
``publish`` signs every unsigned role it holds keys for (publisher roles are signed
when they change, with the publisher's key) and then snapshot and timestamp. A role
created again (e.g. a hash bin after re-binning) continues from the version the
snapshot last listed, so no client ever sees a version go back.

Commands take an exclusive lock on ``<repo>/.lock``; a second command on the same
repository at the same time is refused, not queued.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from index import paths
from index.errors import IndexRepoError
from index.gc import GcMixin
from index.keyring import tuf_key
from index.keystore import KeyStore
from index.lifecycle import LifecycleMixin
from index.model import (
    AddedRelease,
    Delegation,
    ExpiryPolicy,
    PublishResult,
    ReleaseInfo,
    RoleKeys,
)
from index.offline import OfflineMixin
from index.publish import PublishedTree
from index.publishers import PublishersMixin
from index.publishing import PublishingMixin
from index.repo_base import _canonical, _now, _write_file
from index.roles import RolesMixin
from index.signers import Passphrases, fixed_passphrase, sign_checked
from index.signing import SigningMixin
from keys import strict_json
from keys.errors import StrictJSONError

__all__ = [
    "AddedRelease",
    "Delegation",
    "ExpiryPolicy",
    "IndexRepo",
    "PublishResult",
    "ReleaseInfo",
    "RoleKeys",
]

FORMAT = 1
CONFIG = "index.json"


# -- the repository --------------------------------------------------------------------------


def _passphrases(passphrase: bytes | Passphrases | None) -> Passphrases:
    return passphrase if callable(passphrase) else fixed_passphrase(passphrase)


class IndexRepo(
    OfflineMixin,
    RolesMixin,
    SigningMixin,
    PublishersMixin,
    LifecycleMixin,
    PublishingMixin,
    GcMixin,
):
    """An open, locked index repository. Use :meth:`init` or :meth:`open`, then ``close``
    (or a ``with`` block)."""

    def __init__(self, path: Path, expiry: ExpiryPolicy, keyring: KeyStore, lock_fd: int) -> None:
        self.path = path
        self.expiry = expiry
        self.keyring = keyring
        self._lock_fd: int | None = lock_fd
        self._md: dict[str, Metadata[Any]] = {}
        self._unsaved: set[str] = set()
        self._removed: set[str] = set()
        self.tree = PublishedTree(path / "published")

    # -- opening ----------------------------------------------------------------------------

    @staticmethod
    def _lock(path: Path) -> int:
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IndexRepoError(
                f"another pm-plugins index command is working on {path}; try again later"
            ) from None
        return fd

    @classmethod
    def init(
        cls,
        path: Path,
        *,
        passphrase: bytes | Passphrases | None,
        roles: Mapping[str, RoleKeys] | None = None,
        expiry: ExpiryPolicy | None = None,
        hash_bins: int = 0,
        offline: Mapping[str, Path | None] | None = None,
        now: datetime | None = None,
    ) -> IndexRepo:
        """Create a repository in ``path`` (absent or empty): keys for every top-level
        role (``passphrase``: one, or a source of one per role; ``offline``: a folder for
        the root or targets keys), root v1 signed, empty targets; nothing is published."""
        path = Path(path)
        expiry = expiry or ExpiryPolicy()
        setup = {role: RoleKeys() for role in paths.TOP_ROLES}
        for role, keys in (roles or {}).items():
            if role not in setup:
                raise IndexRepoError(f'"{role}" is not a top-level role (root, targets, ...)')
            setup[role] = keys
        for role, keys in setup.items():
            if not 1 <= keys.threshold <= keys.keys <= 16:
                raise IndexRepoError(
                    f"{role} needs 1 to 16 keys and a threshold from 1 to its number of keys"
                    f" (got {keys.keys} keys, threshold {keys.threshold})"
                )
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise IndexRepoError(f"{path} exists and is not an empty folder")
        keyring = KeyStore(path / "keys", _passphrases(passphrase))
        for role in paths.TOP_ROLES:
            keyring.passphrase(role, new=True)
        path.mkdir(parents=True, exist_ok=True)
        (path / "metadata" / "root_history").mkdir(parents=True)
        (path / "blobs").mkdir()
        config = {"format": FORMAT, "expires_days": expiry.to_json()}
        _write_file(path / CONFIG, _canonical(config))
        repo = cls(path, expiry, keyring, cls._lock(path))
        try:
            moment = _now(now)
            root = Root(expires=moment + timedelta(days=expiry.root), consistent_snapshot=True)
            for role, keys in setup.items():
                for _ in range(keys.keys):
                    root.add_key(tuf_key(keyring.create(role, (offline or {}).get(role))), role)
                root.roles[role].threshold = keys.threshold
            root_md = Metadata(root)
            for kid in root.roles["root"].keyids:
                sign_checked(root_md, keyring.signer(kid, root.keys[kid], "root"))
            repo._save_root(root_md)
            repo._put("targets", Metadata(Targets(expires=moment)))
            repo._put("snapshot", Metadata(Snapshot(expires=moment)))
            repo._put("timestamp", Metadata(Timestamp(expires=moment)))
            if hash_bins:
                repo.set_hash_bins(hash_bins, now=moment)
            repo._flush()
        except BaseException:
            repo.close()
            raise
        return repo

    @classmethod
    def open(cls, path: Path, *, passphrase: bytes | Passphrases | None = None) -> IndexRepo:
        """Open an existing repository; a passphrase (one, or a source of one per role) is
        needed only to sign, and only the roles that sign are asked."""
        path = Path(path)
        source = str(path / CONFIG)
        if not (path / CONFIG).is_file():
            raise IndexRepoError(f"{path} is not an index repository (no {CONFIG}; run init)")
        try:
            doc = strict_json.load(path / CONFIG, source=source)
            strict_json.expect(doc, dict, where=source, what="the configuration")
            fmt = strict_json.require(doc, "format", int, where=source)
            days = strict_json.require(doc, "expires_days", dict, where=source)
            values = {
                role: strict_json.require(days, role, int, where=f"{source}: expires_days")
                for role in paths.TOP_ROLES
            }
        except StrictJSONError as e:
            raise IndexRepoError(e.message) from e
        if fmt != FORMAT:
            raise IndexRepoError(f"{source}: format {fmt} is not supported (expected {FORMAT})")
        expiry = ExpiryPolicy(**values)
        return cls(path, expiry, KeyStore(path / "keys", _passphrases(passphrase)), cls._lock(path))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- stored metadata --------------------------------------------------------------------

    def _meta_file(self, role: str) -> Path:
        return self.path / "metadata" / f"{role}.json"

    def _load(self, role: str) -> Metadata[Any]:
        md = self._md.get(role)
        if md is None:
            if role in self._removed:
                raise IndexRepoError(f"role {role} was removed from the repository")
            file = self._meta_file(role)
            try:
                md = Metadata.from_bytes(file.read_bytes())
            except FileNotFoundError:
                raise IndexRepoError(f"{file} is missing; the repository is damaged") from None
            except DeserializationError as e:
                raise IndexRepoError(f"{file} is not valid TUF metadata") from e
            self._md[role] = md
        return md

    def _root_md(self) -> Metadata[Root]:
        md = self._load("root")
        assert isinstance(md.signed, Root)
        return md

    def _targets_md(self, role: str) -> Metadata[Targets]:
        md = self._load(role)
        if not isinstance(md.signed, Targets):
            raise IndexRepoError(f"{self._meta_file(role)} is not targets metadata")
        return md

    def _snapshot_md(self) -> Metadata[Snapshot]:
        md = self._load("snapshot")
        assert isinstance(md.signed, Snapshot)
        return md

    def _timestamp_md(self) -> Metadata[Timestamp]:
        md = self._load("timestamp")
        assert isinstance(md.signed, Timestamp)
        return md

    def _put(self, role: str, md: Metadata[Any]) -> None:
        self._md[role] = md
        self._unsaved.add(role)
        self._removed.discard(role)

    def _edit(self, role: str) -> Metadata[Any]:
        """The metadata of ``role`` for changing: a signed role gets its next version and
        loses its signatures (it is signed again by ``publish`` or the publisher)."""
        md = self._load(role)
        if md.signatures:
            md.signed.version += 1
            md.signatures.clear()
        self._unsaved.add(role)
        return md

    def _edit_targets(self, role: str) -> Targets:
        md = self._edit(role)
        assert isinstance(md.signed, Targets)
        return md.signed

    def _drop(self, role: str) -> None:
        self._md.pop(role, None)
        self._unsaved.discard(role)
        self._removed.add(role)

    def _next_version(self, role: str) -> int:
        """Version for a role created (again) now: after whatever the snapshot listed."""
        meta = self._snapshot_md().signed.meta.get(f"{role}.json")
        return 1 if meta is None else meta.version + 1

    def _save_root(self, md: Metadata[Root]) -> None:
        data = md.to_bytes()
        history = self.path / "metadata" / "root_history"
        history.mkdir(parents=True, exist_ok=True)
        _write_file(history / f"{md.signed.version}.root.json", data)
        _write_file(self._meta_file("root"), data)
        self._md["root"] = md

    def _flush(self) -> None:
        for role in sorted(self._unsaved):
            _write_file(self._meta_file(role), self._md[role].to_bytes())
        for role in sorted(self._removed):
            self._meta_file(role).unlink(missing_ok=True)
        self._unsaved.clear()
        self._removed.clear()
        os.sync()

    # -- queries ----------------------------------------------------------------------------

    @property
    def published_dir(self) -> Path:
        return self.tree.root

    def root_bytes(self, version: int | None = None) -> bytes:
        """The signed root of ``version`` (default: the current one)."""
        if version is None:
            return self._meta_file("root").read_bytes()
        file = self.path / "metadata" / "root_history" / f"{version}.root.json"
        try:
            return file.read_bytes()
        except FileNotFoundError:
            raise IndexRepoError(f"root version {version} is not in {file.parent}") from None

    def role_version(self, role: str) -> int:
        return int(self._load(role).signed.version)
