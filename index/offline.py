"""Roles signed by offline keys: staging them, importing signatures, and publishing around them.

Why it exists: a registry whose root (or targets) keys live on another machine cannot
sign a new root or targets version in the repository. This part of
:class:`index.repository.IndexRepo` writes such a version to ``staged/<role>.json``
signed by whatever keys are here, takes signatures back from copies of that file
(``import_signatures``, checked by :mod:`index.staging`), and puts the version in
effect only when its threshold of valid signatures is met. A root needs the threshold
of the current root's keys and of its own (what every client checks); a staged root
made by ``rotate`` carries ``staged/root.after.json``, the rest of the rotation, done
when it takes effect. Meanwhile ``publish`` keeps the index fresh with the versions in
effect: a role of offline keys that only nears its expiry is staged and left as it is
(with a warning); one that changed stops the publish until it is signed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# python-tuf and securesystemslib re-export these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import Key  # type: ignore[attr-defined]
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

from index import paths
from index.errors import IndexRepoError
from index.model import PublishResult
from index.publishing import PublishingMixin
from index.repo_base import _all_or_nothing, _now
from index.signers import sign_checked
from index.signing import SigningMixin
from index.staging import new_signatures, pick_staged, read_metadata, same_but_version_and_expiry
from index.staging import write_metadata as _write_metadata
from keys import strict_json
from keys._fs import write_atomic
from keys.errors import StrictJSONError

__all__ = ["STAGED", "ImportResult", "OfflineMixin", "StagedRole"]

STAGED = "staged"
_AFTER = "root.after.json"


@dataclass(frozen=True)
class StagedRole:
    """A role version waiting for signatures: who signed it, and who still must."""

    role: str
    version: int
    path: Path
    signed_by: tuple[str, ...]
    waiting_for: tuple[str, ...]


@dataclass(frozen=True)
class ImportResult:
    role: str
    version: int
    added: tuple[str, ...]
    activated: bool
    waiting_for: tuple[str, ...]


class OfflineMixin(SigningMixin, PublishingMixin):
    """Staging, ``import_signatures``, ``drop_staged`` and ``publish`` around offline keys."""

    _held: frozenset[str] = frozenset()

    # -- the staged files -------------------------------------------------------------------

    def _staged_file(self, role: str) -> Path:
        return self.path / STAGED / f"{role}.json"

    def _staged(self, role: str) -> Metadata[Any] | None:
        file = self._staged_file(role)
        return read_metadata(file) if file.is_file() else None

    def _staged_names(self) -> list[str]:
        folder = self.path / STAGED
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if p.name != _AFTER)

    def _unstage(self, role: str) -> None:
        self._staged_file(role).unlink(missing_ok=True)
        if role == "root":
            (self.path / STAGED / _AFTER).unlink(missing_ok=True)

    def _refuse_if_root_staged(self) -> None:
        staged = self._staged("root")
        if staged is not None:
            raise IndexRepoError(
                f"root v{staged.signed.version} is staged and waits for signatures; import"
                " them (index import-signatures) or drop it (index unstage) first"
            )

    def _read_after(self) -> dict[str, Any] | None:
        file = self.path / STAGED / _AFTER
        if not file.is_file():
            return None
        where = str(file)
        try:
            doc = strict_json.load(file, source=where)
            strict_json.expect(doc, dict, where=where, what="the document")
            role = strict_json.require(doc, "rotate", str, where=where)
            for name in ("old", "new"):
                for kid in strict_json.require(doc, name, list, where=where):
                    strict_json.expect(kid, str, where=where, what=f"a key id in {name}")
            strict_json.require(doc, "threshold", int, where=where)
        except StrictJSONError as e:
            raise IndexRepoError(e.message) from e
        if role not in paths.TOP_ROLES:
            raise IndexRepoError(f"{where}: {role!r} is not a top-level role")
        return dict(doc)

    # -- who can sign -----------------------------------------------------------------------

    def _offline_ids(self, role: str) -> list[str]:
        """Keys of ``role`` kept offline (and not made in this session)."""
        ids, _ = self._signing_role(role)
        keyring = self.keyring
        return [k for k in ids if keyring.place(k).offline is not None and not keyring.has(k)]

    def _can_sign(self, role: str) -> bool:
        ids, threshold = self._signing_role(role)
        return sum(1 for kid in ids if self.keyring.has(kid)) >= threshold

    def _allowed_keys(self, role: str, staged: Metadata[Any]) -> dict[str, Key]:
        """The keys whose signatures count for the staged ``role``."""
        if role != "root":
            delegator = self._delegator_of(role)
            ids, _ = self._signing_role(role)
            return {kid: delegator.get_key(kid) for kid in ids}
        current, new = self._root_md().signed, staged.signed
        for kid in set(current.keys) & set(new.keys):
            if current.keys[kid] != new.keys[kid]:
                raise IndexRepoError(
                    f"the staged root v{new.version} gives key {kid[:16]} another public key"
                    f" than root v{current.version}; refusing it"
                )
        allowed = {kid: current.keys[kid] for kid in current.roles["root"].keyids}
        allowed.update({kid: new.keys[kid] for kid in new.roles["root"].keyids})
        return allowed

    def _waiting_for(self, role: str, md: Metadata[Any]) -> tuple[str, ...]:
        """What ``md`` still needs, e.g. ``1 more of the old root's keys (a1.., b2..)``."""
        if role == "root":
            current = self._root_md().signed
            if md.signed.version != current.version + 1:
                return (f"nothing: it is stale (root is at v{current.version}); drop it",)
            both = md.signed.get_root_verification_result(current, md.signed_bytes, md.signatures)
            checks = [("old root's", both.first), ("new root's", both.second)]
            if both.first.unsigned.keys() == both.second.unsigned.keys():
                checks = [("root", max(both.first, both.second, key=lambda r: r.missing))]
        else:
            delegator = self._delegator_of(role)
            one = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
            checks = [(f"{role}", one)]
        out = []
        for which, result in checks:
            if result.missing:
                ids = ", ".join(kid[:16] for kid in result.unsigned)
                out.append(f"{result.missing} more of the {which} keys ({ids})")
        return tuple(out)

    def staged_roles(self) -> list[StagedRole]:
        """Every role version waiting for signatures."""
        out = []
        for role in self._staged_names():
            md = self._staged(role)
            assert md is not None
            out.append(
                StagedRole(
                    role=role,
                    version=md.signed.version,
                    path=self._staged_file(role),
                    signed_by=tuple(md.signatures),
                    waiting_for=self._waiting_for(role, md),
                )
            )
        return out

    # -- staging ----------------------------------------------------------------------------

    def _new_root(
        self,
        change: Callable[[Root], None],
        now: datetime,
        after: Mapping[str, Any] | None = None,
    ) -> Metadata[Root] | None:
        """As :meth:`index.signing.SigningMixin._new_root`; with offline root keys the new
        root is staged (with ``after``, the rest of a rotation) and None returned."""
        if self._staged("root") is not None:
            if after is None:
                return None  # a new root waits for signatures already
            self._refuse_if_root_staged()
        try:
            return super()._new_root(change, now, after)
        except IndexRepoError:
            if not self._offline_ids("root"):
                raise
        new = self._next_root(change, now)
        _write_metadata(self._staged_file("root"), new)
        if after is not None:
            data = json.dumps(dict(after), sort_keys=True, indent=1).encode("utf-8")
            write_atomic(self.path / STAGED / _AFTER, data, 0o644)
        return None

    def _still_fits(self, stored: Metadata[Any], staged: Metadata[Any]) -> bool:
        """Whether ``staged`` is ``stored`` signed again: the same content, and its version
        (or the next, if ``stored`` is signed)."""
        step = 1 if stored.signatures else 0
        return staged.signed.version == stored.signed.version + step and (
            same_but_version_and_expiry(stored, staged)
        )

    def _stage_copy(self, role: str, stored: Metadata[Any], moment: datetime) -> Metadata[Any]:
        copy = Metadata.from_bytes(stored.to_bytes())
        if copy.signatures:
            copy.signed.version += 1
        copy.signatures.clear()
        copy.signed.expires = moment + timedelta(days=self.expiry.days(role))
        for signer in self.role_signers(role):
            sign_checked(copy, signer)
        _write_metadata(self._staged_file(role), copy)
        return copy

    def _stage_offline_roles(self, moment: datetime) -> list[str]:
        """Before ``publish``: stage what offline keys must sign; hold roles that only near
        their expiry (warnings returned); refuse if a changed role waits for them."""
        notes: list[str] = []
        held: set[str] = set()
        root = self._root_md().signed
        near = super()._near_expiry("root", moment)
        if near and self._offline_ids("root") and not self._can_sign("root"):
            self._new_root(lambda r: None, moment)
            held.add("root")
            notes.append(
                f"root v{root.version} expires on {root.expires:%Y-%m-%d}; root"
                f" v{root.version + 1} waits for the offline root keys (index sign-request)"
            )
        waiting = []
        for role, _ in self.targets_roles():
            mine = self._is_maintainer_role(role)
            if not mine or not self._offline_ids(role) or self._can_sign(role):
                continue
            stored = self._load(role)
            if stored.signatures and not super()._near_expiry(role, moment):
                continue
            staged = self._staged(role)
            if staged is None or not self._still_fits(stored, staged):
                staged = self._stage_copy(role, stored, moment)
            if stored.signatures:
                held.add(role)
                notes.append(
                    f"{role} v{stored.signed.version} expires on {stored.signed.expires:%Y-%m-%d};"
                    f" v{staged.signed.version} waits for its offline keys (index sign-request)"
                )
            else:
                waiting.append(f"{role} v{staged.signed.version}")
        if waiting:
            raise IndexRepoError(
                f"{', '.join(waiting)} changed and must be signed by offline keys: staged in"
                f" {self.path / STAGED}; sign it (pm-plugins index sign), bring the signatures"
                " back (index import-signatures), then publish"
            )
        self._held = frozenset(held)
        return notes

    def _near_expiry(self, role: str, now: datetime) -> bool:
        return role not in self._held and super()._near_expiry(role, now)

    @_all_or_nothing
    def publish(self, *, now: datetime | None = None) -> PublishResult:
        moment = _now(now)
        try:
            notes = self._stage_offline_roles(moment)
            result = super().publish(now=moment)
        finally:
            self._held = frozenset()
        result.warnings.extend(notes)
        return result

    # -- signatures coming back -------------------------------------------------------------

    @_all_or_nothing
    def import_signatures(
        self, files: Sequence[Path], *, now: datetime | None = None
    ) -> list[ImportResult]:
        """Add the signatures in ``files`` (signed copies of staged files) to what is
        staged; a version whose threshold is met takes effect. A file that signs other
        bytes, or carries a signature by another key or one that does not verify, is
        refused and nothing is imported."""
        moment = _now(now)
        staged: dict[str, Metadata[Any]] = {}
        for name in self._staged_names():
            md = self._staged(name)
            if md is not None:
                staged[name] = md
        if not staged:
            raise IndexRepoError(f"nothing in {self.path} waits for signatures")
        added: dict[str, list[str]] = {}
        for file in files:
            incoming = read_metadata(Path(file))
            role = pick_staged(Path(file), incoming, staged)
            allowed = self._allowed_keys(role, staged[role])
            fresh = new_signatures(Path(file), incoming, staged[role], role, allowed)
            staged[role].signatures.update(fresh)
            added.setdefault(role, [])
            added[role].extend(kid for kid in fresh if kid not in added[role])
        results = []
        for role, kids in added.items():
            md = staged[role]
            _write_metadata(self._staged_file(role), md)
            done = self._activate_root(md, moment) if role == "root" else self._activate(role, md)
            waiting = () if done else self._waiting_for(role, md)
            results.append(ImportResult(role, md.signed.version, tuple(kids), done, waiting))
        return results

    def _activate(self, role: str, md: Metadata[Any]) -> bool:
        delegator = self._delegator_of(role)
        if not delegator.get_verification_result(role, md.signed_bytes, md.signatures):
            return False
        if not self._still_fits(self._load(role), md):
            raise IndexRepoError(
                f"{role} changed since v{md.signed.version} was staged; publish stages it again"
                " (these signatures are for the old content)"
            )
        self._put(role, md)
        self._flush()
        self._unstage(role)
        return True

    def _activate_root(self, md: Metadata[Root], moment: datetime) -> bool:
        current = self._root_md().signed
        if md.signed.version != current.version + 1:
            raise IndexRepoError(
                f"the staged root v{md.signed.version} is stale (root is at v{current.version});"
                " drop it with index unstage root"
            )
        self._allowed_keys("root", md)  # refuses a key id given another public key
        both = md.signed.get_root_verification_result(current, md.signed_bytes, md.signatures)
        if not both.verified:
            return False
        if md.signed.expires <= moment:
            raise IndexRepoError(
                f"the staged root v{md.signed.version} expired on {md.signed.expires:%Y-%m-%d};"
                " drop it and make it again"
            )
        after = self._read_after()
        if after is not None:
            role = after["rotate"]
            given = md.signed.roles[role]
            if list(given.keyids) != after["new"] or given.threshold != after["threshold"]:
                raise IndexRepoError(
                    f"the staged root v{md.signed.version} does not give {role} the keys its"
                    f" rotation made ({self.path / STAGED / _AFTER}); refusing it"
                )
        self._save_root(md)
        if after is not None:
            self._after_rotation(after["rotate"], after["old"], after["threshold"])
        self._flush()
        if after is not None:
            self._retire_unused(after["old"])
        self._unstage("root")
        return True

    @_all_or_nothing
    def drop_staged(self, role: str) -> int:
        """Forget the staged ``role`` (and the keys a staged rotation made); returns its
        version."""
        md = self._staged(role)
        if md is None:
            raise IndexRepoError(f"no {role} is staged in {self.path}")
        after = self._read_after() if role == "root" else None
        self._unstage(role)
        if after is not None:
            self._retire_unused(after["new"])
        return int(md.signed.version)
