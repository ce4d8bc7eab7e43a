"""The maintainer's TUF repository on disk: keys, signed metadata, target contents.

Why it exists: ``pm-plugins index`` commands each open the repository, change it and
leave it consistent; this module is that state and every change to it. Publishing the
result as static files is :mod:`index.publish`; the CLI is
``cli.index``.

Layout of a repository folder::

    index.json                 format and expiry policy (days per role)
    keys/<key id>.key          encrypted private keys of root, targets, snapshot, timestamp
    metadata/root_history/N.root.json, metadata/root.json    every signed root
    metadata/<role>.json       the current metadata of every other role
    blobs/<sha256>             target contents, by hash
    published/metadata, published/targets                    what ``publish`` writes

Roles: the four top-level roles; ``publisher-<publisher>`` delegated by ``targets``
(terminating, paths ``<name>/*`` and ``<name>/*/*/*`` per plugin, signed by the
publisher's own key); with hash bins, ``bins`` delegated by ``targets`` for every other
path, whose succinct roles ``bin-<hex>`` hold the targets (TAP 15; signed by the
targets keys). Target paths and the ``custom`` fields are described in
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

import copy
import fcntl
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

# python-tuf and securesystemslib re-export these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (  # type: ignore[attr-defined]
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from index import paths
from index.errors import IndexRepoError
from index.keyring import KeyRing, tuf_key, tuf_signer
from index.publish import PublishedTree
from keys import ed25519, strict_json
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
_MAX_BIN_BITS = 16
_BIN_PATHS = ["*/*", "*/*/*/*"]
_CUSTOM_FIELDS = ("types", "requires", "description", "publisher", "publisher_key_id")
_RESERVED_CUSTOM = ("name", "version", "platform", "manifest")
_KEY_ID = re.compile(r"[0-9a-f]{64}")


# -- plain data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryPolicy:
    """How long each role's signature is valid, in days (delegated roles and hash bins
    use ``targets``)."""

    root: int = 365
    targets: int = 365
    snapshot: int = 7
    timestamp: int = 1

    def __post_init__(self) -> None:
        for role in paths.TOP_ROLES:
            days = getattr(self, role)
            if type(days) is not int or not 1 <= days <= 3650:
                raise IndexRepoError(
                    f"the expiry of {role} must be a whole number of days from 1 to 3650"
                )

    def days(self, role: str) -> int:
        return int(getattr(self, role)) if role in paths.TOP_ROLES else self.targets

    def to_json(self) -> dict[str, int]:
        return {role: self.days(role) for role in paths.TOP_ROLES}


@dataclass(frozen=True)
class RoleKeys:
    """How many keys a top-level role gets at ``init`` and how many must sign."""

    keys: int = 1
    threshold: int = 1


@dataclass(frozen=True)
class ReleaseInfo:
    """One plugin release for one platform, as extracted from a package.

    ``artifact`` is the artifact's content (bytes or a file), ``manifest`` the bytes of
    the publisher's ``manifest.dsse.json``. ``custom`` holds the descriptive fields the
    caller took from the verified manifest: ``types`` (list of str), ``requires``
    ({"host": [...], "plugins": {name: specifier}}), ``description``, ``publisher`` and
    ``publisher_key_id`` (the envelope's signing key id). The index adds ``name``,
    ``version``, ``platform`` and ``manifest`` (the manifest's target path) and puts the
    result in the artifact target's ``custom`` field.
    """

    name: str
    version: str
    platform: str
    artifact_filename: str
    artifact: bytes | Path
    manifest: bytes
    custom: Mapping[str, Any]


@dataclass(frozen=True)
class AddedRelease:
    name: str
    version: str
    platform: str
    role: str
    artifact_path: str
    manifest_path: str


@dataclass(frozen=True)
class Delegation:
    """A publisher's delegated role: who signs it and which plugins it may hold."""

    publisher: str
    role: str
    key_ids: tuple[str, ...]
    plugins: tuple[str, ...]


@dataclass
class PublishResult:
    """What ``publish`` signed and wrote."""

    signed: dict[str, int] = field(default_factory=dict)
    root_version: int = 0
    snapshot_version: int = 0
    timestamp_version: int = 0
    metadata_written: int = 0
    targets_written: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.signed) or self.metadata_written > 0 or self.targets_written > 0


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


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _all_or_nothing(
    method: Callable[Concatenate[IndexRepo, _P], _R],
) -> Callable[Concatenate[IndexRepo, _P], _R]:
    """A change that fails leaves the repository as it was on disk: the metadata held in
    memory is dropped (files are written only at the end of a successful change)."""

    @functools.wraps(method)
    def wrapper(self: IndexRepo, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self._md.clear()
            self._unsaved.clear()
            self._removed.clear()
            raise

    return wrapper


# -- the repository --------------------------------------------------------------------------


class IndexRepo:
    """An open, locked index repository. Use :meth:`init` or :meth:`open`, then ``close``
    (or a ``with`` block)."""

    def __init__(self, path: Path, expiry: ExpiryPolicy, keyring: KeyRing, lock_fd: int) -> None:
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
        passphrase: bytes | None,
        roles: Mapping[str, RoleKeys] | None = None,
        expiry: ExpiryPolicy | None = None,
        hash_bins: int = 0,
        now: datetime | None = None,
    ) -> IndexRepo:
        """Create a repository in ``path`` (absent or empty): keys for every top-level
        role, root v1 signed, empty targets; nothing is published until ``publish``."""
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
        if not passphrase:
            raise IndexRepoError(
                f"the index keys are stored encrypted: set {ed25519.PASSPHRASE_ENV}"
            )
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise IndexRepoError(f"{path} exists and is not an empty folder")
        path.mkdir(parents=True, exist_ok=True)
        (path / "metadata" / "root_history").mkdir(parents=True)
        (path / "blobs").mkdir()
        config = {"format": FORMAT, "expires_days": expiry.to_json()}
        _write_file(path / CONFIG, _canonical(config))
        repo = cls(path, expiry, KeyRing(path / "keys", passphrase), cls._lock(path))
        try:
            moment = _now(now)
            root = Root(expires=moment + timedelta(days=expiry.root), consistent_snapshot=True)
            for role, keys in setup.items():
                for _ in range(keys.keys):
                    root.add_key(tuf_key(repo.keyring.create()), role)
                root.roles[role].threshold = keys.threshold
            root_md = Metadata(root)
            for kid in root.roles["root"].keyids:
                root_md.sign(repo.keyring.signer(kid), append=True)
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
    def open(cls, path: Path, *, passphrase: bytes | None = None) -> IndexRepo:
        """Open an existing repository; ``passphrase`` is needed only to sign."""
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
        return cls(path, expiry, KeyRing(path / "keys", passphrase), cls._lock(path))

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

    def hash_bins(self) -> int:
        """The number of hash bins, 0 for the flat layout."""
        delegations = self._targets_md("targets").signed.delegations
        if delegations is None or delegations.roles is None:
            return 0
        if paths.BINS_ROLE not in delegations.roles:
            return 0
        succinct = self._bins_succinct()
        return int(succinct.number_of_bins)

    def _bins_succinct(self) -> SuccinctRoles:
        bins = self._targets_md(paths.BINS_ROLE).signed
        if bins.delegations is None or bins.delegations.succinct_roles is None:
            raise IndexRepoError(f"role {paths.BINS_ROLE} does not delegate to hash bins")
        return bins.delegations.succinct_roles

    def targets_roles(self) -> list[tuple[str, str]]:
        """Every current targets role with its delegator, in lookup order."""
        out = [("targets", "root")]
        delegations = self._targets_md("targets").signed.delegations
        if delegations is not None and delegations.roles is not None:
            for name in delegations.roles:
                out.append((name, "targets"))
                if name == paths.BINS_ROLE:
                    out.extend((b, name) for b in self._bins_succinct().get_roles())
        return out

    def delegations(self) -> list[Delegation]:
        """The publisher delegations, in lookup order."""
        found = []
        delegations = self._targets_md("targets").signed.delegations
        if delegations is None or delegations.roles is None:
            return []
        for name, role in delegations.roles.items():
            if not name.startswith(paths.PUBLISHER_ROLE_PREFIX):
                continue
            plugins = []
            for pattern in role.paths or []:
                plugin = pattern.split("/", 1)[0]
                if plugin not in plugins:
                    plugins.append(plugin)
            found.append(
                Delegation(
                    publisher=name[len(paths.PUBLISHER_ROLE_PREFIX) :],
                    role=name,
                    key_ids=tuple(role.keyids),
                    plugins=tuple(plugins),
                )
            )
        return found

    def delegation_for(self, name: str) -> Delegation | None:
        """The publisher delegation that holds plugin ``name``, if any."""
        for delegation in self.delegations():
            if name in delegation.plugins:
                return delegation
        return None

    def delegation_keys(self, role: str) -> dict[str, Ed25519PublicKey]:
        """The public keys of a publisher role, by key id."""
        delegations = self._targets_md("targets").signed.delegations
        if delegations is None or delegations.roles is None or role not in delegations.roles:
            raise IndexRepoError(f"role {role} is not delegated")
        out: dict[str, Ed25519PublicKey] = {}
        for kid in delegations.roles[role].keyids:
            raw = bytes.fromhex(delegations.keys[kid].keyval["public"])
            out[kid] = Ed25519PublicKey.from_public_bytes(raw)
        return out

    def _role_for(self, target_path: str) -> str:
        """The role that holds (or would hold) ``target_path`` now."""
        delegation = self.delegation_for(target_path.split("/", 1)[0])
        if delegation is not None:
            return delegation.role
        if self.hash_bins():
            return self._bins_succinct().get_role_for_target(target_path)
        return "targets"

    def _lookup(self, target_path: str) -> TargetFile | None:
        return self._targets_md(self._role_for(target_path)).signed.targets.get(target_path)

    def all_targets(self) -> dict[str, tuple[str, TargetFile]]:
        """Every target in every current role: path -> (role, target)."""
        out: dict[str, tuple[str, TargetFile]] = {}
        for role, _ in self.targets_roles():
            for target_path, tf in self._targets_md(role).signed.targets.items():
                out.setdefault(target_path, (role, tf))
        return out

    def _signing_role(self, role: str) -> tuple[list[str], int]:
        """Key ids and threshold that must sign ``role``."""
        if role in paths.TOP_ROLES:
            r = self._root_md().signed.roles[role]
            return list(r.keyids), r.threshold
        if role == paths.BINS_ROLE or role.startswith(paths.PUBLISHER_ROLE_PREFIX):
            delegated = self._targets_md("targets").signed.get_delegated_role(role)
            return list(delegated.keyids), delegated.threshold
        delegated = self._targets_md(paths.BINS_ROLE).signed.get_delegated_role(role)
        return list(delegated.keyids), delegated.threshold

    def role_signers(self, role: str) -> list[Signer]:
        """Signers for every key of ``role`` held in ``keys/`` (publisher keys are not)."""
        key_ids, _ = self._signing_role(role)
        return [self.keyring.signer(kid) for kid in key_ids if self.keyring.has(kid)]

    def _is_maintainer_role(self, role: str) -> bool:
        return not role.startswith(paths.PUBLISHER_ROLE_PREFIX)

    # -- signing ----------------------------------------------------------------------------

    def _sign(self, role: str, signers: Sequence[Signer], now: datetime) -> None:
        md = self._load(role)
        md.signed.expires = now + timedelta(days=self.expiry.days(role))
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        _, threshold = self._signing_role(role)
        if len({s.public_key.keyid for s in signers}) < threshold:
            raise IndexRepoError(
                f"role {role} needs {threshold} signatures but only"
                f" {len(signers)} of its private keys are in {self.keyring.folder}"
            )
        self._unsaved.add(role)

    def _new_root(self, change: Callable[[Root], None], now: datetime) -> Metadata[Root]:
        """Sign the next root version: ``change`` edits it; it is signed by every root key
        of the old and the new version held here (both thresholds must be met)."""
        old = self._root_md()
        new = Metadata[Root].from_bytes(old.to_bytes())
        new.signatures.clear()
        new.signed.version += 1
        new.signed.expires = now + timedelta(days=self.expiry.root)
        change(new.signed)
        ids = list(dict.fromkeys(old.signed.roles["root"].keyids + new.signed.roles["root"].keyids))
        for kid in ids:
            if self.keyring.has(kid):
                new.sign(self.keyring.signer(kid), append=True)
        for verifier, which in ((old.signed, "old"), (new.signed, "new")):
            try:
                verifier.verify_delegate("root", new.signed_bytes, new.signatures)
            except UnsignedMetadataError as e:
                raise IndexRepoError(
                    f"the new root cannot be signed by enough keys of the {which} root"
                    f" (private keys in {self.keyring.folder} are missing)"
                ) from e
        self._save_root(new)
        return new

    # -- blobs ------------------------------------------------------------------------------

    def _blob(self, sha256: str) -> Path:
        return self.path / "blobs" / sha256

    def _store_blob(self, content: bytes | Path) -> tuple[str, int]:
        """Keep ``content`` in ``blobs/``; returns its sha256 and length."""
        folder = self.path / "blobs"
        folder.mkdir(exist_ok=True)
        if isinstance(content, bytes):
            digest = _sha256_bytes(content)
            if not self._blob(digest).exists():
                _write_file(self._blob(digest), content)
            return digest, len(content)
        hasher = hashlib.sha256()
        length = 0
        fd, tmp = tempfile.mkstemp(prefix=".blob.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, open(content, "rb") as src:
                os.fchmod(out.fileno(), 0o644)
                while chunk := src.read(1 << 20):
                    hasher.update(chunk)
                    length += len(chunk)
                    out.write(chunk)
            digest = hasher.hexdigest()
            os.replace(tmp, self._blob(digest))
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise IndexRepoError(f"{content}: cannot be read ({e.strerror or e})") from e
        return digest, length

    def blob_path(self, tf: TargetFile) -> Path:
        return self._blob(tf.hashes["sha256"])

    # -- changes ----------------------------------------------------------------------------

    @_all_or_nothing
    def add_releases(
        self,
        releases: Sequence[ReleaseInfo],
        *,
        publisher_keys: Sequence[Ed25519PrivateKey] = (),
        now: datetime | None = None,
    ) -> list[AddedRelease]:
        """Add releases (artifact, manifest and the plugin's ``releases.json`` targets).

        A release of a plugin delegated to a publisher goes in the publisher's role,
        which is signed at once with the matching key from ``publisher_keys``; others go
        in ``targets`` or their hash bin and are signed by ``publish``. A release that
        is already in the index is refused: published versions never change.
        """
        moment = _now(now)
        keys_by_id = {ed25519.key_id(k): k for k in publisher_keys}
        added: list[AddedRelease] = []
        seen: set[tuple[str, str, str]] = set()
        touched_publishers: dict[str, list[Ed25519PrivateKey]] = {}
        listings: dict[str, list[dict[str, Any]]] = {}
        for rel in releases:
            where = f"release {rel.name!r} {rel.version!r} ({rel.platform})"
            name = _part(paths.check_name, rel.name, where)
            version = _part(paths.check_version, rel.version, where)
            platform = _part(paths.check_platform, rel.platform, where)
            filename = _part(paths.check_filename, rel.artifact_filename, where)
            where = f"{name} {version} ({platform})"
            if (name, version, platform) in seen:
                raise IndexRepoError(f"{where} is given twice")
            seen.add((name, version, platform))
            delegation = self.delegation_for(name)
            if delegation is not None:
                signing = [keys_by_id[k] for k in delegation.key_ids if k in keys_by_id]
                if not signing:
                    raise IndexRepoError(
                        f"{name} is delegated to publisher {delegation.publisher}: its"
                        " releases must be signed with that publisher's private key"
                        " (--publisher-key)"
                    )
                touched_publishers[delegation.role] = signing
            custom = self._custom(rel, where)
            apath = paths.artifact_path(name, version, platform, filename)
            mpath = paths.manifest_path(name, version, platform)
            if name not in listings:
                rpath = paths.releases_path(name)
                listings[name] = self._release_entries(self._lookup(rpath), rpath)
            entries = listings[name]
            if (
                any(
                    e["artifact"]["custom"].get("version") == version
                    and e["artifact"]["custom"].get("platform") == platform
                    for e in entries
                )
                or self._lookup(apath)
                or self._lookup(mpath)
            ):
                raise IndexRepoError(
                    f"{where} is already in the index; a published release never changes"
                )
            a_sha, a_len = self._store_blob(rel.artifact)
            m_sha, m_len = self._store_blob(rel.manifest)
            custom.update(name=name, version=version, platform=platform, manifest=mpath)
            artifact = TargetFile(a_len, {"sha256": a_sha}, apath, {"custom": custom})
            manifest = TargetFile(m_len, {"sha256": m_sha}, mpath)
            entries.append(
                {
                    "artifact": {**_target_dict(artifact), "custom": custom},
                    "manifest": _target_dict(manifest),
                }
            )
            for tf in (artifact, manifest):
                self._edit_targets(self._role_for(tf.path)).targets[tf.path] = tf
            added.append(AddedRelease(name, version, platform, self._role_for(apath), apath, mpath))
        # one release list per plugin, written once per batch
        for name, entries in listings.items():
            rpath = paths.releases_path(name)
            r_sha, r_len = self._store_blob(_canonical({"name": name, "releases": entries}))
            index_tf = TargetFile(
                r_len, {"sha256": r_sha}, rpath, {"custom": {"releases": entries}}
            )
            self._edit_targets(self._role_for(rpath)).targets[rpath] = index_tf
        for role, signing in touched_publishers.items():
            self._sign(role, [tuf_signer(k) for k in signing], moment)
        self._flush()
        return added

    @staticmethod
    def _custom(rel: ReleaseInfo, where: str) -> dict[str, Any]:
        custom = dict(rel.custom)
        for key in _RESERVED_CUSTOM:
            if key in custom:
                raise IndexRepoError(f"{where}: custom field {key!r} is set by the index")
        missing = [k for k in _CUSTOM_FIELDS if k not in custom]
        if missing:
            raise IndexRepoError(f"{where}: custom field {missing[0]!r} is missing")
        kinds = {"types": list, "requires": dict, "description": str, "publisher": str}
        for key, kind in kinds.items():
            if type(custom[key]) is not kind:
                raise IndexRepoError(f"{where}: custom field {key!r} must be a {kind.__name__}")
        key_id = custom["publisher_key_id"]
        if not isinstance(key_id, str) or _KEY_ID.fullmatch(key_id) is None:
            raise IndexRepoError(f"{where}: custom field 'publisher_key_id' is not a key id")
        try:
            return dict(json.loads(_canonical(custom)))
        except (TypeError, ValueError) as e:
            raise IndexRepoError(f"{where}: the custom fields are not plain JSON") from e

    @staticmethod
    def _release_entries(tf: TargetFile | None, rpath: str) -> list[dict[str, Any]]:
        if tf is None:
            return []
        custom = tf.custom
        if not isinstance(custom, dict) or not isinstance(custom.get("releases"), list):
            raise IndexRepoError(f"target {rpath} has no release list; the index is damaged")
        return copy.deepcopy(list(custom["releases"]))

    @_all_or_nothing
    def delegate(
        self,
        publisher: str,
        public_key: Ed25519PublicKey,
        plugins: Sequence[str],
        *,
        publisher_key: Ed25519PrivateKey | None = None,
        now: datetime | None = None,
    ) -> Delegation:
        """Delegate ``plugins`` to ``publisher``'s own role, signed by ``public_key``.

        The role's metadata must be signed by the publisher: pass ``publisher_key`` here
        or with the publisher's next ``add``; ``publish`` refuses an unsigned role. A
        plugin already delegated to someone else, or with releases signed by the index
        itself, is refused.
        """
        moment = _now(now)
        publisher = _part(paths.check_publisher, publisher, "delegate")
        role = paths.publisher_role(publisher)
        if not plugins:
            raise IndexRepoError(f"delegating to {publisher} needs at least one plugin name")
        names = [_part(paths.check_name, p, f"delegate to {publisher}") for p in plugins]
        key = tuf_key(public_key)
        if publisher_key is not None and ed25519.key_id(publisher_key) != key.keyid:
            raise IndexRepoError(
                f"the private key given for {publisher} does not match the delegated public key"
            )
        for name in names:
            current = self.delegation_for(name)
            if current is not None and current.role != role:
                raise IndexRepoError(
                    f"{name} is already delegated to publisher {current.publisher}"
                )
            if current is None and self._lookup(paths.releases_path(name)) is not None:
                raise IndexRepoError(
                    f"{name} already has releases signed by the index itself; delegating"
                    f" it to {publisher} would hide them"
                )
        targets = self._edit_targets("targets")
        if targets.delegations is None:
            targets.delegations = Delegations(keys={}, roles={})
        delegations = targets.delegations
        assert delegations.roles is not None
        existing = delegations.roles.get(role)
        resign = False
        if existing is None:
            existing = DelegatedRole(role, [key.keyid], 1, True, paths=[])
            ordered = {n: r for n, r in delegations.roles.items() if n != paths.BINS_ROLE}
            ordered[role] = existing
            if paths.BINS_ROLE in delegations.roles:
                ordered[paths.BINS_ROLE] = delegations.roles[paths.BINS_ROLE]
            delegations.roles = ordered
            delegations.keys[key.keyid] = key
            self._put(
                role,
                Metadata(Targets(version=self._next_version(role), expires=moment)),
            )
            resign = True
        elif existing.keyids != [key.keyid]:
            for kid in existing.keyids:
                if not any(kid in r.keyids for n, r in delegations.roles.items() if n != role):
                    delegations.keys.pop(kid, None)
            existing.keyids = [key.keyid]
            delegations.keys[key.keyid] = key
            self._edit(role)
            resign = True
        assert existing.paths is not None
        for name in names:
            for pattern in paths.delegation_patterns(name):
                if pattern not in existing.paths:
                    existing.paths.append(pattern)
        if publisher_key is not None and (
            resign or not self._load(role).signatures or self._near_expiry(role, moment)
        ):
            self._edit(role)
            self._sign(role, [tuf_signer(publisher_key)], moment)
        self._flush()
        result = self.delegation_for(names[0])
        assert result is not None
        return result

    @_all_or_nothing
    def set_hash_bins(self, count: int, *, now: datetime | None = None) -> bool:
        """Hold the index's own targets in ``count`` hash bins (a power of two, 2 to
        65536). Turning bins on moves the targets out of ``targets``; a new count moves
        them between bins. Returns False if the layout was already so."""
        if count < 2 or count & (count - 1) or count > 2**_MAX_BIN_BITS:
            raise IndexRepoError(
                f"the number of hash bins must be a power of two from 2 to {2**_MAX_BIN_BITS}"
                f" (got {count})"
            )
        bits = count.bit_length() - 1
        moment = _now(now)
        root = self._root_md().signed
        key_ids = list(root.roles["targets"].keyids)
        threshold = root.roles["targets"].threshold
        keys = {kid: root.keys[kid] for kid in key_ids}
        current = self.hash_bins()
        if current == count:
            return False
        moving: dict[str, TargetFile] = {}
        if current:
            for old_bin in list(self._bins_succinct().get_roles()):
                moving.update(self._targets_md(old_bin).signed.targets)
                self._drop(old_bin)
            bins = self._edit_targets(paths.BINS_ROLE)
        else:
            top = self._edit_targets("targets")
            moving.update(top.targets)
            top.targets = {}
            if top.delegations is None:
                top.delegations = Delegations(keys={}, roles={})
            assert top.delegations.roles is not None
            top.delegations.roles[paths.BINS_ROLE] = DelegatedRole(
                paths.BINS_ROLE, list(key_ids), threshold, True, paths=list(_BIN_PATHS)
            )
            top.delegations.keys.update(keys)
            self._put(
                paths.BINS_ROLE,
                Metadata(Targets(version=self._next_version(paths.BINS_ROLE), expires=moment)),
            )
            bins = self._targets_md(paths.BINS_ROLE).signed
        succinct = SuccinctRoles(list(key_ids), threshold, bits, paths.BIN_PREFIX)
        bins.delegations = Delegations(keys=dict(keys), succinct_roles=succinct)
        new_bins: dict[str, Targets] = {}
        for name in succinct.get_roles():
            new_bins[name] = Targets(version=self._next_version(name), expires=moment)
            self._put(name, Metadata(new_bins[name]))
        for target_path, tf in moving.items():
            new_bins[succinct.get_role_for_target(target_path)].targets[target_path] = tf
        self._flush()
        return True

    @_all_or_nothing
    def rotate(
        self,
        role: str,
        *,
        keys: int | None = None,
        threshold: int | None = None,
        now: datetime | None = None,
    ) -> list[str]:
        """Replace every key of top-level ``role`` by new ones (default: as many, same
        threshold) in a new root version, signed by the old and the new root keys.
        Roles signed by the replaced keys are signed again at the next ``publish``.
        Returns the new key ids."""
        if role not in paths.TOP_ROLES:
            raise IndexRepoError(
                f'"{role}" is not a top-level role; rotate root, targets, snapshot or timestamp'
            )
        moment = _now(now)
        old_root = self._root_md().signed
        old_ids = list(old_root.roles[role].keyids)
        count = len(old_ids) if keys is None else keys
        wanted = old_root.roles[role].threshold if threshold is None else threshold
        if not 1 <= wanted <= count <= 16:
            raise IndexRepoError(
                f"{role} needs 1 to 16 keys and a threshold from 1 to its number of keys"
                f" (got {count} keys, threshold {wanted})"
            )
        new_keys = [self.keyring.create() for _ in range(count)]

        def change(root: Root) -> None:
            for kid in old_ids:
                root.revoke_key(kid, role)
            for key in new_keys:
                root.add_key(tuf_key(key), role)
            root.roles[role].threshold = wanted

        new_root = self._new_root(change, moment)
        if role == "targets":
            new_ids = [ed25519.key_id(k) for k in new_keys]
            new_tuf = {ed25519.key_id(k): tuf_key(k) for k in new_keys}
            self._edit("targets")
            if self.hash_bins():
                top = self._targets_md("targets").signed
                assert top.delegations is not None and top.delegations.roles is not None
                bins_role = top.delegations.roles[paths.BINS_ROLE]
                for kid in old_ids:
                    top.delegations.keys.pop(kid, None)
                bins_role.keyids = list(new_ids)
                bins_role.threshold = wanted
                top.delegations.keys.update(new_tuf)
                bins = self._edit_targets(paths.BINS_ROLE)
                assert bins.delegations is not None
                bins.delegations.keys = dict(new_tuf)
                bins.delegations.succinct_roles = SuccinctRoles(
                    list(new_ids), wanted, self._bins_succinct().bit_length, paths.BIN_PREFIX
                )
                for name in list(self._bins_succinct().get_roles()):
                    self._edit(name)
        elif role in ("snapshot", "timestamp"):
            self._edit(role)
        self._flush()
        for kid in old_ids:
            if kid not in new_root.signed.keys:
                self.keyring.retire(kid)
        return [ed25519.key_id(k) for k in new_keys]

    # -- publishing -------------------------------------------------------------------------

    def _near_expiry(self, role: str, now: datetime) -> bool:
        left = self._load(role).signed.expires - now
        return bool(left < timedelta(days=self.expiry.days(role)) / 2)

    @_all_or_nothing
    def publish(self, *, now: datetime | None = None) -> PublishResult:
        """Sign what changed, then snapshot and timestamp, and write ``published/``.

        Roles that are unchanged but past half their lifetime are signed again too, so
        a regular ``publish`` keeps the index fresh (``timestamp`` is the frequent one).
        """
        moment = _now(now)
        result = PublishResult()
        if self._near_expiry("root", moment):
            self._new_root(lambda root: None, moment)
            result.signed["root"] = self.role_version("root")
        roles = self.targets_roles()
        for role, _ in roles:
            md = self._load(role)
            if self._is_maintainer_role(role):
                if md.signatures and self._near_expiry(role, moment):
                    self._edit(role)
                if not md.signatures:
                    self._sign(role, self.role_signers(role), moment)
                    result.signed[role] = md.signed.version
            elif not md.signatures:
                raise IndexRepoError(
                    f"role {role} has changed but is not signed by its publisher; pass the"
                    " publisher's key with --publisher-key to add or delegate"
                )
            elif self._near_expiry(role, moment):
                result.warnings.append(
                    f"role {role} expires on {md.signed.expires:%Y-%m-%d}; the publisher"
                    " must sign it again (delegate or add with --publisher-key)"
                )
        snapshot_md = self._snapshot_md()
        meta = dict(snapshot_md.signed.meta)
        for role, _ in roles:
            meta[f"{role}.json"] = MetaFile(
                version=self.role_version(role), length=len(self._load(role).to_bytes())
            )
        if (
            meta != snapshot_md.signed.meta
            or not snapshot_md.signatures
            or self._near_expiry("snapshot", moment)
        ):
            self._edit("snapshot")
            snapshot_md.signed.meta = meta
            self._sign("snapshot", self.role_signers("snapshot"), moment)
            result.signed["snapshot"] = snapshot_md.signed.version
        snapshot_bytes = snapshot_md.to_bytes()
        timestamp_md = self._timestamp_md()
        snapshot_meta = MetaFile(
            version=snapshot_md.signed.version,
            length=len(snapshot_bytes),
            hashes={"sha256": _sha256_bytes(snapshot_bytes)},
        )
        if (
            timestamp_md.signed.snapshot_meta != snapshot_meta
            or not timestamp_md.signatures
            or self._near_expiry("timestamp", moment)
        ):
            self._edit("timestamp")
            timestamp_md.signed.snapshot_meta = snapshot_meta
            self._sign("timestamp", self.role_signers("timestamp"), moment)
            result.signed["timestamp"] = timestamp_md.signed.version
        self._flush()

        tree = self.tree
        before = (tree.metadata_written, tree.targets_written)
        for role, _ in roles:
            for tf in self._targets_md(role).signed.targets.values():
                blob = self.blob_path(tf)
                if not blob.is_file():
                    raise IndexRepoError(f"the content of target {tf.path} is missing ({blob})")
                tree.put_target(tf.path, tf.hashes["sha256"], tf.length, blob)
        root_version = self.role_version("root")
        for version in range(1, root_version + 1):
            tree.put_metadata(f"{version}.root.json", self.root_bytes(version))
        for role, _ in roles:
            tree.put_metadata(f"{self.role_version(role)}.{role}.json", self._load(role).to_bytes())
        tree.put_metadata(f"{snapshot_md.signed.version}.snapshot.json", snapshot_bytes)
        tree.replace("root.json", self.root_bytes())
        tree.flush()
        timestamp_bytes = timestamp_md.to_bytes()
        if tree.read_metadata("timestamp.json") != timestamp_bytes:
            tree.replace("timestamp.json", timestamp_bytes)
            tree.flush()
        result.metadata_written = tree.metadata_written - before[0]
        result.targets_written = tree.targets_written - before[1]
        result.root_version = root_version
        result.snapshot_version = snapshot_md.signed.version
        result.timestamp_version = timestamp_md.signed.version
        return result

    @_all_or_nothing
    def timestamp(self, *, now: datetime | None = None) -> int:
        """Sign a new timestamp (next version, new expiry) for the published snapshot and
        publish it; nothing else changes. Returns the new version."""
        moment = _now(now)
        timestamp_md = self._timestamp_md()
        snapshot_file = f"{timestamp_md.signed.snapshot_meta.version}.snapshot.json"
        root_file = f"{self.role_version('root')}.root.json"
        for needed in (snapshot_file, root_file):
            if self.tree.read_metadata(needed) is None:
                raise IndexRepoError(f"{needed} is not published yet; run publish before timestamp")
        self._edit("timestamp")
        timestamp_md.signed.version = max(
            timestamp_md.signed.version, self._published_timestamp_version() + 1
        )
        self._sign("timestamp", self.role_signers("timestamp"), moment)
        self._flush()
        self.tree.replace("timestamp.json", timestamp_md.to_bytes())
        self.tree.flush()
        return int(timestamp_md.signed.version)

    def _published_timestamp_version(self) -> int:
        data = self.tree.read_metadata("timestamp.json")
        if data is None:
            return 0
        try:
            version: int = Metadata[Timestamp].from_bytes(data).signed.version
            return version
        except DeserializationError:
            return 0
