"""Releases and targets of the index: target lookups, blobs and ``add_releases``.

Why it exists: this is the part of :class:`index.repository.IndexRepo` that holds what
clients download: which role holds a target path, the target contents kept by hash in
``blobs/``, and adding releases (artifact, manifest and the plugin's ``releases.json``
targets, with the ``custom`` fields described in :class:`index.model.ReleaseInfo`). It
is a mixin typed against :class:`index.repo_base.RepoBase`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from index import paths
from index.errors import IndexRepoError
from index.keyring import tuf_signer
from index.model import AddedRelease, Delegation, ReleaseInfo
from index.publishers import refuse_host_module
from index.repo_base import (
    RepoBase,
    _all_or_nothing,
    _canonical,
    _now,
    _part,
    _sha256_bytes,
    _target_dict,
    _write_file,
)
from keys import ed25519

__all__ = ["ReleasesMixin"]

_CUSTOM_FIELDS = ("types", "requires", "description", "publisher", "publisher_key_id")
_RESERVED_CUSTOM = ("name", "version", "platform", "manifest", "yanked", "yanked_reason")
_KEY_ID = re.compile(r"[0-9a-f]{64}")


class ReleasesMixin(RepoBase):
    """Target lookups, blobs and ``add_releases``."""

    # -- targets ----------------------------------------------------------------------------

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
            added.append(self._add_release(rel, seen, keys_by_id, touched_publishers, listings))
        # one release list per plugin, written once per batch
        self._write_release_lists(listings)
        for role, signing in touched_publishers.items():
            self._sign(role, [tuf_signer(k) for k in signing], moment)
        self._flush()
        return added

    def _add_release(
        self,
        rel: ReleaseInfo,
        seen: set[tuple[str, str, str]],
        keys_by_id: Mapping[str, Ed25519PrivateKey],
        touched_publishers: dict[str, list[Ed25519PrivateKey]],
        listings: dict[str, list[dict[str, Any]]],
    ) -> AddedRelease:
        """Add one release of a batch: its artifact and manifest targets, and its entry in
        ``listings`` (the plugin's release list, written once per batch)."""
        name, version, platform, filename, where = self._release_parts(rel, seen)
        refuse_host_module(name, where)
        self._check_not_retired(name, version)
        delegation = self.delegation_for(name)
        if delegation is not None:
            touched_publishers[delegation.role] = self._publisher_signing(
                name, delegation, keys_by_id
            )
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
        return AddedRelease(name, version, platform, self._role_for(apath), apath, mpath)

    @staticmethod
    def _release_parts(
        rel: ReleaseInfo, seen: set[tuple[str, str, str]]
    ) -> tuple[str, str, str, str, str]:
        """The checked name, version, platform and artifact filename of ``rel`` and how to
        name it in messages; a release given twice in one batch is refused."""
        where = f"release {rel.name!r} {rel.version!r} ({rel.platform})"
        name = _part(paths.check_name, rel.name, where)
        version = _part(paths.check_version, rel.version, where)
        platform = _part(paths.check_platform, rel.platform, where)
        filename = _part(paths.check_filename, rel.artifact_filename, where)
        where = f"{name} {version} ({platform})"
        if (name, version, platform) in seen:
            raise IndexRepoError(f"{where} is given twice")
        seen.add((name, version, platform))
        return name, version, platform, filename, where

    @staticmethod
    def _publisher_signing(
        name: str, delegation: Delegation, keys_by_id: Mapping[str, Ed25519PrivateKey]
    ) -> list[Ed25519PrivateKey]:
        """The given keys that may sign ``delegation``'s role; none is refused."""
        signing = [keys_by_id[k] for k in delegation.key_ids if k in keys_by_id]
        if not signing:
            raise IndexRepoError(
                f"{name} is delegated to publisher {delegation.publisher}: its"
                " releases must be signed with that publisher's private key"
                " (--publisher-key)"
            )
        return signing

    def _write_release_lists(self, listings: Mapping[str, list[dict[str, Any]]]) -> None:
        """Store each plugin's ``releases.json`` and set its target."""
        for name, entries in listings.items():
            rpath = paths.releases_path(name)
            r_sha, r_len = self._store_blob(_canonical({"name": name, "releases": entries}))
            index_tf = TargetFile(
                r_len, {"sha256": r_sha}, rpath, {"custom": {"releases": entries}}
            )
            self._edit_targets(self._role_for(rpath)).targets[rpath] = index_tf

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
