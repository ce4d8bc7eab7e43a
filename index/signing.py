"""Signing the index's roles: which keys must sign a role, and new root versions.

Why it exists: every change that re-signs metadata (``add_releases`` for publisher
roles, ``delegate``, ``rotate``, ``publish``, ``timestamp``) goes through these few
methods of :class:`index.repository.IndexRepo`, which check thresholds against the keys
held in ``keys/`` (:mod:`index.keystore`). Every signature goes through a signer from
the key's URI and is checked as it is made (:func:`index.signers.sign_checked`). A root
the keys here cannot sign alone waits for offline signatures (:mod:`index.offline`). It is
a mixin typed against :class:`index.repo_base.RepoBase`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

# python-tuf and securesystemslib re-export these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets  # type: ignore[attr-defined]

from index import paths
from index.errors import IndexRepoError
from index.repo_base import RepoBase
from index.signers import sign_checked

__all__ = ["SigningMixin"]


class SigningMixin(RepoBase):
    """Who signs a role, signing it, and signing a new root version."""

    def _delegator_of(self, role: str) -> Root | Targets:
        """The metadata that names ``role``'s keys and threshold."""
        if role in paths.TOP_ROLES:
            return self._root_md().signed
        if role == paths.BINS_ROLE or role.startswith(paths.PUBLISHER_ROLE_PREFIX):
            return self._targets_md("targets").signed
        return self._targets_md(paths.BINS_ROLE).signed

    def _signing_role(self, role: str) -> tuple[list[str], int]:
        """Key ids and threshold that must sign ``role``."""
        delegated = self._delegator_of(role).get_delegated_role(role)
        return list(delegated.keyids), delegated.threshold

    def role_signers(self, role: str) -> list[Signer]:
        """Signers for every key of ``role`` that can sign here (publisher keys cannot)."""
        delegator = self._delegator_of(role)
        key_ids, _ = self._signing_role(role)
        asking = role if role in paths.TOP_ROLES else "targets"
        return [
            self.keyring.signer(kid, delegator.get_key(kid), asking)
            for kid in key_ids
            if self.keyring.has(kid)
        ]

    def _is_maintainer_role(self, role: str) -> bool:
        return not role.startswith(paths.PUBLISHER_ROLE_PREFIX)

    def _sign(self, role: str, signers: Sequence[Signer], now: datetime) -> None:
        md = self._load(role)
        md.signed.expires = now + timedelta(days=self.expiry.days(role))
        md.signatures.clear()
        for signer in signers:
            sign_checked(md, signer)
        _, threshold = self._signing_role(role)
        if len({s.public_key.keyid for s in signers}) < threshold:
            raise IndexRepoError(
                f"role {role} needs {threshold} signatures but only"
                f" {len(signers)} of its private keys are in {self.keyring.folder}"
            )
        self._unsaved.add(role)

    def _next_root(self, change: Callable[[Root], None], now: datetime) -> Metadata[Root]:
        """The next root version: ``change`` edits it; it is signed by every root key of the
        old and the new version that can sign here."""
        old = self._root_md()
        new = Metadata[Root].from_bytes(old.to_bytes())
        new.signatures.clear()
        new.signed.version += 1
        new.signed.expires = now + timedelta(days=self.expiry.root)
        change(new.signed)
        ids = list(dict.fromkeys(old.signed.roles["root"].keyids + new.signed.roles["root"].keyids))
        for kid in ids:
            if self.keyring.has(kid):
                key = new.signed.keys.get(kid) or old.signed.keys[kid]
                sign_checked(new, self.keyring.signer(kid, key, "root"))
        return new

    def _new_root(
        self,
        change: Callable[[Root], None],
        now: datetime,
        after: Mapping[str, Any] | None = None,
    ) -> Metadata[Root] | None:
        """Sign and save the next root version (both thresholds must be met here; with
        offline root keys :mod:`index.offline` stages it instead and returns None)."""
        old = self._root_md()
        new = self._next_root(change, now)
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
