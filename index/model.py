"""The plain data of the index: what callers pass in and get back.

Why it exists: these frozen records (releases to add, expiry and key policies, the
results of ``add_releases``, ``delegate`` and ``publish``) carry no repository state,
so they live apart from :class:`index.repository.IndexRepo` and its mixins, which all
use them; they are re-exported by :mod:`index.repository` and :mod:`index`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index import paths
from index.errors import IndexRepoError

__all__ = [
    "AddedRelease",
    "Delegation",
    "ExpiryPolicy",
    "PublishResult",
    "ReleaseInfo",
    "RoleKeys",
]


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
