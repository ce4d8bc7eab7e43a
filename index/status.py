"""What a maintainer must know about each role: version, keys, threshold, expiry, and whether
clients see what the repository holds.

Why it exists: an index stops working for every user the moment one role's metadata
expires, and nothing else says when that is. :func:`index_status` reads the repository
and its published folder (no key is opened) and reports, for root, targets, snapshot,
timestamp and every delegated role: the version held and the version published, where
each key is (in the repository, offline, a KMS URI, a publisher's), the threshold, the
expiry of what clients see, and a warning when that comes within the warning window
(default: a quarter of the role's lifetime, so 6 hours for a 1-day timestamp and 91
days for a 365-day root) or the published copy differs from the repository's. Hash bins
are reported as one line (``bin-*``, the earliest to expire).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import Metadata  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError

from index import paths
from index.offline import StagedRole
from index.repo_base import _now
from index.repository import IndexRepo

__all__ = ["IndexStatus", "KeyStatus", "RoleStatus", "index_status"]

_BINS = paths.BIN_PREFIX + "-"
_ADVICE = {
    "timestamp": "run pm-plugins index timestamp",
    "snapshot": "run pm-plugins index publish",
    "root": "run pm-plugins index publish (offline root keys: sign the staged root)",
}


@dataclass(frozen=True)
class KeyStatus:
    key_id: str
    where: str  # repo, offline, missing, publisher, or "uri <scheme>"


@dataclass(frozen=True)
class RoleStatus:
    role: str
    version: int
    published_version: int | None
    published: str  # same, behind (publish pending), differs, absent
    threshold: int
    keys: tuple[KeyStatus, ...]
    expires: datetime | None  # of what clients see, else of the signed copy held here
    days_left: float | None
    lifetime_days: int
    staged_version: int | None = None
    count: int = 1
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "count": self.count,
            "version": self.version,
            "published_version": self.published_version,
            "published": self.published,
            "threshold": self.threshold,
            "keys": [{"id": k.key_id, "where": k.where} for k in self.keys],
            "expires": None if self.expires is None else self.expires.isoformat(),
            "days_left": None if self.days_left is None else round(self.days_left, 3),
            "lifetime_days": self.lifetime_days,
            "staged_version": self.staged_version,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class IndexStatus:
    roles: tuple[RoleStatus, ...]
    staged: tuple[StagedRole, ...]

    @property
    def warnings(self) -> list[str]:
        return [r.warning for r in self.roles if r.warning]

    def to_json(self) -> dict[str, Any]:
        return {
            "roles": [r.to_json() for r in self.roles],
            "staged": [
                {
                    "role": s.role,
                    "version": s.version,
                    "path": str(s.path),
                    "signed_by": list(s.signed_by),
                    "waiting_for": list(s.waiting_for),
                }
                for s in self.staged
            ],
            "warnings": self.warnings,
        }


def _parse(data: bytes | None) -> Metadata[Any] | None:
    if data is None:
        return None
    try:
        return Metadata.from_bytes(data)
    except DeserializationError:
        return None


def _published(repo: IndexRepo) -> dict[str, bytes | None]:
    """The published bytes of every role clients reach now (through the timestamp)."""
    read = repo.tree.read_metadata
    out: dict[str, bytes | None] = {"root": read("root.json"), "timestamp": read("timestamp.json")}
    timestamp = _parse(out["timestamp"])
    if timestamp is None:
        return out
    out["snapshot"] = read(f"{timestamp.signed.snapshot_meta.version}.snapshot.json")
    snapshot = _parse(out["snapshot"])
    if snapshot is not None:
        for name, meta in snapshot.signed.meta.items():
            role = name.removesuffix(".json")
            out[role] = read(f"{meta.version}.{name}")
    return out


def _human(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 2 * 86400:
        amount = f"{int(seconds // 86400)} days"
    elif seconds >= 2 * 3600:
        amount = f"{int(seconds // 3600)} hours"
    else:
        amount = f"{int(seconds // 60)} minutes"
    return f"in {amount}" if delta.total_seconds() >= 0 else f"{amount} ago"


def _role_status(
    repo: IndexRepo, role: str, published: bytes | None, now: datetime, warn_days: float | None
) -> RoleStatus:
    stored = repo._load(role)
    key_ids, threshold = repo._signing_role(role)
    publisher = role.startswith(paths.PUBLISHER_ROLE_PREFIX)
    asking = role if role in paths.TOP_ROLES else "targets"
    keys = tuple(
        KeyStatus(kid, "publisher" if publisher else repo.keyring.place(kid, asking).where)
        for kid in key_ids
    )
    seen = _parse(published)
    state = "absent"
    if seen is not None:
        if seen.signed.version < stored.signed.version:
            state = "behind"
        else:
            same = seen.signed.version == stored.signed.version and published == stored.to_bytes()
            state = "same" if same else "differs"
    shown = seen if seen is not None else (stored if stored.signatures else None)
    expires = None if shown is None else shown.signed.expires
    lifetime = repo.expiry.days(role)
    left = None if expires is None else expires - now
    staged = repo._staged(role)
    warning = None
    if left is not None:
        window = timedelta(days=lifetime / 4 if warn_days is None else warn_days)
        version = shown.signed.version if shown is not None else stored.signed.version
        if left < window:
            verb = "expires" if left.total_seconds() > 0 else "expired"
            advice = _ADVICE.get(role, "run pm-plugins index publish")
            if publisher:
                advice = "its publisher must sign it again (index add --publisher-key)"
            warning = (
                f"{role} v{version} {verb} on {expires:%Y-%m-%d %H:%M} UTC, {_human(left)}:"
                f" {advice}"
            )
    if state == "differs":
        warning = f"the published {role} differs from the repository's: publish again"
    return RoleStatus(
        role=role,
        version=stored.signed.version,
        published_version=None if seen is None else seen.signed.version,
        published=state,
        threshold=threshold,
        keys=keys,
        expires=expires,
        days_left=None if left is None else left.total_seconds() / 86400,
        lifetime_days=lifetime,
        staged_version=None if staged is None else staged.signed.version,
        warning=warning,
    )


def _fold_bins(roles: list[RoleStatus]) -> list[RoleStatus]:
    """Hash bins as one line: the earliest to expire stands for all of them."""
    bins = [r for r in roles if r.role.startswith(_BINS)]
    if not bins:
        return roles
    first = min(bins, key=lambda r: (r.days_left is None, r.days_left or 0.0))
    worst = next((r.published for r in bins if r.published != "same"), "same")
    warning = next((r.warning for r in bins if r.warning), None)
    top = max(r.version for r in bins)
    folded = replace(
        first, role=f"{_BINS}*", count=len(bins), published=worst, version=top, warning=warning
    )
    out = [r for r in roles if not r.role.startswith(_BINS)]
    out.insert(roles.index(bins[0]), folded)
    return out


def index_status(
    repo: IndexRepo, *, now: datetime | None = None, warn_days: float | None = None
) -> IndexStatus:
    """Every role of ``repo`` as clients see it, with a warning where one is due."""
    moment = _now(now)
    published = _published(repo)
    names = ["root", *[r for r, _ in repo.targets_roles()], "snapshot", "timestamp"]
    roles = [_role_status(repo, r, published.get(r), moment, warn_days) for r in names]
    return IndexStatus(roles=tuple(_fold_bins(roles)), staged=tuple(repo.staged_roles()))
