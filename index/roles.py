"""Keys and roles of the index: who signs what, publisher delegations and hash bins.

Why it exists: this is the part of :class:`index.repository.IndexRepo` that decides
which keys sign which role and changes that: the role queries (targets roles, publisher
delegations, hash bins) and the ``delegate``, ``set_hash_bins`` and ``rotate``
commands; signing itself is :mod:`index.signing`. It is a mixin typed against
:class:`index.repo_base.RepoBase`.

Roles: the four top-level roles; ``publisher-<publisher>`` delegated by ``targets``
(terminating, paths ``<name>/*`` and ``<name>/*/*/*`` per plugin, signed by the
publisher's own key); with hash bins, ``bins`` delegated by ``targets`` for every other
path, whose succinct roles ``bin-<hex>`` hold the targets (TAP 15; signed by the
targets keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

# python-tuf and securesystemslib re-export these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import Key  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from index import paths
from index.errors import IndexRepoError
from index.keyring import public_key_of, tuf_key, tuf_signer
from index.model import Delegation
from index.repo_base import RepoBase, _all_or_nothing, _now, _part
from keys import ed25519

__all__ = ["RolesMixin"]

_MAX_BIN_BITS = 16
_BIN_PATHS = ["*/*", "*/*/*/*"]


class RolesMixin(RepoBase):
    """Role queries, ``delegate``, ``set_hash_bins`` and ``rotate``."""

    # -- queries ----------------------------------------------------------------------------

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
            out[kid] = public_key_of(delegations.keys[kid])
        return out

    # -- changes ----------------------------------------------------------------------------

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
        self._check_delegable(publisher, role, names)
        existing, resign = self._delegated_role(role, key, moment)
        assert existing.paths is not None
        for name in names:
            for pattern in paths.delegation_patterns(name):
                if pattern not in existing.paths:
                    existing.paths.append(pattern)
        if publisher_key is not None and self._signing_due(role, resign, moment):
            self._edit(role)
            self._sign(role, [tuf_signer(publisher_key)], moment)
        self._flush()
        result = self.delegation_for(names[0])
        assert result is not None
        return result

    def _check_delegable(self, publisher: str, role: str, names: Sequence[str]) -> None:
        """Refuse plugins delegated to another publisher than ``role``'s, or with releases
        signed by the index itself."""
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

    def _delegated_role(self, role: str, key: Key, moment: datetime) -> tuple[DelegatedRole, bool]:
        """The delegation of ``role`` in ``targets``, created (with empty metadata) or given
        ``key`` as its only key if needed; and whether its metadata must be signed again."""
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
        return existing, resign

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
        keys_dir: Path | None = None,
        now: datetime | None = None,
    ) -> list[str]:
        """Replace every key of top-level ``role`` by new ones (default: as many, same
        threshold) in a new root version, signed by the old and the new root keys.
        Roles signed by the replaced keys are signed again at the next ``publish``.
        New root or targets keys go to ``keys_dir`` (offline) if given. With offline root
        keys the new root is staged until their signatures are imported
        (:mod:`index.offline`). Returns the new key ids."""
        if role not in paths.TOP_ROLES:
            raise IndexRepoError(
                f'"{role}" is not a top-level role; rotate root, targets, snapshot or timestamp'
            )
        moment = _now(now)
        self._refuse_if_root_staged()
        old_root = self._root_md().signed
        old_ids = list(old_root.roles[role].keyids)
        count = len(old_ids) if keys is None else keys
        wanted = old_root.roles[role].threshold if threshold is None else threshold
        if not 1 <= wanted <= count <= 16:
            raise IndexRepoError(
                f"{role} needs 1 to 16 keys and a threshold from 1 to its number of keys"
                f" (got {count} keys, threshold {wanted})"
            )
        if keys_dir is None and any(self.keyring.place(k).offline for k in old_ids):
            raise IndexRepoError(
                f"the {role} keys are kept offline: name a folder for the new ones (--keys-dir)"
            )
        new_keys = [self.keyring.create(role, keys_dir) for _ in range(count)]
        new_ids = [ed25519.key_id(k) for k in new_keys]

        def change(root: Root) -> None:
            for kid in old_ids:
                root.revoke_key(kid, role)
            for key in new_keys:
                root.add_key(tuf_key(key), role)
            root.roles[role].threshold = wanted

        after = {"rotate": role, "old": old_ids, "new": new_ids, "threshold": wanted}
        if self._new_root(change, moment, after) is None:
            self._flush()  # staged: the rest follows when the root is signed
            return new_ids
        self._after_rotation(role, old_ids, wanted)
        self._flush()
        self._retire_unused(old_ids)
        return new_ids

    def _after_rotation(self, role: str, old_ids: Sequence[str], threshold: int) -> None:
        """Once the root that rotated ``role`` is in effect: mark what its new keys sign
        for signing at the next ``publish`` (and move the hash bins to them)."""
        root = self._root_md().signed
        if role == "targets":
            self._edit("targets")
            if self.hash_bins():
                new = {kid: root.keys[kid] for kid in root.roles["targets"].keyids}
                self._rekey_bins(old_ids, new, threshold)
        elif role in ("snapshot", "timestamp"):
            self._edit(role)

    def _retire_unused(self, old_ids: Sequence[str]) -> None:
        root = self._root_md().signed
        for kid in old_ids:
            if kid not in root.keys:
                self.keyring.retire(kid)

    def _rekey_bins(self, old_ids: Sequence[str], new_tuf: Mapping[str, Key], wanted: int) -> None:
        """After a rotation of the targets keys: delegate ``bins`` and its hash bins to the
        new keys (threshold ``wanted``); every bin is signed again at the next ``publish``."""
        new_ids = list(new_tuf)
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
