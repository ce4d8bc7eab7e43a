"""Publishing the index: signing what changed, snapshot and timestamp, and expiry.

Why it exists: this is the part of :class:`index.repository.IndexRepo` that turns the
stored metadata into a consistent published index: ``publish`` signs every unsigned
role it holds keys for (publisher roles are signed when they change, with the
publisher's key), re-signs roles past half their lifetime, then signs snapshot and
timestamp and writes ``published/`` through :mod:`index.publish` (after
:func:`index.publishers.check_roles`, and recording when each snapshot version went out for
:mod:`index.gc`); ``timestamp`` signs just a new timestamp. It is a mixin typed against
:class:`index.repo_base.RepoBase`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError

from index.errors import IndexRepoError
from index.gc import record_publication
from index.model import PublishResult
from index.publishers import check_roles
from index.repo_base import RepoBase, _all_or_nothing, _now, _sha256_bytes

__all__ = ["PublishingMixin"]


class PublishingMixin(RepoBase):
    """``publish``, ``timestamp`` and when a signature is due again."""

    def _near_expiry(self, role: str, now: datetime) -> bool:
        left = self._load(role).signed.expires - now
        return bool(left < timedelta(days=self.expiry.days(role)) / 2)

    def _signing_due(self, role: str, changed: bool, now: datetime) -> bool:
        """Whether `role` must be signed again: its content changed, it is unsigned, or it
        is past half its lifetime."""
        return changed or not self._load(role).signatures or self._near_expiry(role, now)

    @_all_or_nothing
    def publish(self, *, now: datetime | None = None) -> PublishResult:
        """Sign what changed, then snapshot and timestamp, and write ``published/``.

        Roles that are unchanged but past half their lifetime are signed again too, so
        a regular ``publish`` keeps the index fresh (``timestamp`` is the frequent one).
        """
        moment = _now(now)
        result = PublishResult()
        check_roles(self)  # a publisher role past its paths or unsigned: nothing is published
        if self._near_expiry("root", moment):
            self._new_root(lambda root: None, moment)
            result.signed["root"] = self.role_version("root")
        roles = self.targets_roles()
        self._sign_targets_roles(roles, moment, result)
        snapshot_md = self._sign_snapshot(roles, moment, result)
        snapshot_bytes = snapshot_md.to_bytes()
        timestamp_md = self._sign_timestamp(snapshot_md, snapshot_bytes, moment, result)
        self._flush()

        self._write_published(roles, snapshot_md, snapshot_bytes, timestamp_md, result)
        record_publication(self.path, result.snapshot_version, moment)  # for gc
        return result

    def _sign_targets_roles(
        self, roles: Sequence[tuple[str, str]], moment: datetime, result: PublishResult
    ) -> None:
        """Sign every changed or half-expired maintainer role of ``roles``; a changed
        publisher role must already be signed by its publisher."""
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

    def _sign_snapshot(
        self, roles: Sequence[tuple[str, str]], moment: datetime, result: PublishResult
    ) -> Metadata[Snapshot]:
        """Sign a new snapshot if the versions of ``roles`` changed (or it is unsigned or
        half-expired); returns the snapshot."""
        snapshot_md = self._snapshot_md()
        meta = dict(snapshot_md.signed.meta)
        for role, _ in roles:
            meta[f"{role}.json"] = MetaFile(
                version=self.role_version(role), length=len(self._load(role).to_bytes())
            )
        if self._signing_due("snapshot", meta != snapshot_md.signed.meta, moment):
            self._edit("snapshot")
            snapshot_md.signed.meta = meta
            self._sign("snapshot", self.role_signers("snapshot"), moment)
            result.signed["snapshot"] = snapshot_md.signed.version
        return snapshot_md

    def _sign_timestamp(
        self,
        snapshot_md: Metadata[Snapshot],
        snapshot_bytes: bytes,
        moment: datetime,
        result: PublishResult,
    ) -> Metadata[Timestamp]:
        """Sign a new timestamp if the snapshot changed (or it is unsigned or half-expired);
        returns the timestamp."""
        timestamp_md = self._timestamp_md()
        snapshot_meta = MetaFile(
            version=snapshot_md.signed.version,
            length=len(snapshot_bytes),
            hashes={"sha256": _sha256_bytes(snapshot_bytes)},
        )
        if self._signing_due(
            "timestamp", timestamp_md.signed.snapshot_meta != snapshot_meta, moment
        ):
            self._edit("timestamp")
            timestamp_md.signed.snapshot_meta = snapshot_meta
            self._sign("timestamp", self.role_signers("timestamp"), moment)
            result.signed["timestamp"] = timestamp_md.signed.version
        return timestamp_md

    def _write_published(
        self,
        roles: Sequence[tuple[str, str]],
        snapshot_md: Metadata[Snapshot],
        snapshot_bytes: bytes,
        timestamp_md: Metadata[Timestamp],
        result: PublishResult,
    ) -> None:
        """Write targets and metadata to ``published/``, timestamp last, and count them in
        ``result``."""
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
