"""What a registry's signed metadata says about releases, checked exactly.

Why this is its own module: the release model (:class:`TargetInfo`, :class:`Release`,
:class:`IndexState`) and the parsing of the ``custom`` fields the index writes into its
targets are plain data checks, independent of TUF's download and verification machinery
in :mod:`registry_client.tuf_client`. A malformed entry is a
:class:`~keys.errors.StrictJSONError`, which the client records as a warning and skips.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import TargetFile, Targets  # type: ignore[attr-defined]

from index import paths
from keys import strict_json
from keys.errors import StrictJSONError
from keys.store import is_key_id
from loader.fields import check_name, check_types, check_version, show

__all__ = ["IndexState", "Release", "TargetInfo", "shadowed"]

_PLATFORM = re.compile(r"any|[a-z0-9]+-[a-z0-9_]+")
_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HASH_NAME = re.compile(r"[a-z0-9-]{1,32}")
_HEX = re.compile(r"[0-9a-f]{16,256}")
_MAX_DESCRIPTION = 4096


@dataclass(frozen=True)
class TargetInfo:
    """A target as the signed metadata describes it: path, length, hashes, custom."""

    path: str
    length: int
    hashes: Mapping[str, str] = field(hash=False)
    custom: Any = field(default=None, hash=False, compare=False)

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    def to_tuf(self) -> TargetFile:
        return TargetFile(self.length, dict(self.hashes), self.path)

    @classmethod
    def of(cls, tf: TargetFile) -> TargetInfo:
        return cls(tf.path, tf.length, dict(tf.hashes), tf.custom)


@dataclass(frozen=True)
class Release:
    """One plugin release for one platform, from the signed index metadata alone."""

    name: str
    version: str
    platform: str
    types: tuple[str, ...]
    host_modules: tuple[str, ...]
    plugin_requires: tuple[tuple[str, str], ...]
    description: str
    publisher: str
    publisher_key_id: str
    artifact: TargetInfo
    manifest: TargetInfo
    yanked: bool = False
    yanked_reason: str = ""

    @property
    def yank_note(self) -> str | None:
        """``"NAME VERSION is yanked: reason"`` for a yanked release, else None."""
        if not self.yanked:
            return None
        return f"{self.name} {self.version} is yanked: {self.yanked_reason or 'no reason given'}"

    @property
    def requires(self) -> dict[str, Any]:
        """``requires`` in the manifest's JSON form."""
        return {"host": list(self.host_modules), "plugins": dict(self.plugin_requires)}


@dataclass(frozen=True)
class IndexState:
    """The versions a refresh ended with."""

    registry: str
    root_version: int
    timestamp_version: int
    snapshot_version: int
    targets_version: int
    timestamp_expires: datetime


# -- custom fields -----------------------------------------------------------------------------


def _target_info(doc: Any, *, where: str) -> TargetInfo:
    strict_json.expect(doc, dict, where=where, what="the target")
    path = strict_json.require(doc, "path", str, where=where)
    length = strict_json.require(doc, "length", int, where=where)
    hashes = strict_json.require(doc, "hashes", dict, where=where)
    if length < 0:
        raise StrictJSONError(f'{where}: field "length" is negative')
    if not hashes:
        raise StrictJSONError(f'{where}: field "hashes" is empty')
    for algo, value in hashes.items():
        strict_json.expect(value, str, where=where, what=f'hash "{algo}"')
        if not _HASH_NAME.fullmatch(algo) or not _HEX.fullmatch(value):
            raise StrictJSONError(f"{where}: hash {show(algo)} is not a lowercase hex digest")
    return TargetInfo(path, length, dict(hashes), doc.get("custom"))


def _release(artifact: TargetInfo, manifest: TargetInfo | None, *, where: str) -> Release:
    """A :class:`Release` from an artifact target's custom fields, checked exactly."""
    custom = artifact.custom
    strict_json.expect(custom, dict, where=where, what='the "custom" field')
    name, version, platform = _identity(custom, where=where)
    types = check_types(
        strict_json.require(custom, "types", list, where=where), where=where, non_empty=True
    )
    host_modules, plugin_requires = _requirements(custom, where=where)
    description, publisher, key_id = _publisher_fields(custom, where=where)
    manifest = _signed_manifest(custom, artifact, manifest, (name, version, platform), where=where)
    yanked, reason = _yank(custom, where=where)
    return Release(
        name=name,
        version=version,
        platform=platform,
        types=types,
        host_modules=host_modules,
        plugin_requires=plugin_requires,
        description=description,
        publisher=publisher,
        publisher_key_id=key_id,
        artifact=artifact,
        manifest=manifest,
        yanked=yanked,
        yanked_reason=reason,
    )


def _identity(custom: dict[str, Any], *, where: str) -> tuple[str, str, str]:
    """The release's name, version and platform."""
    name = strict_json.require(custom, "name", str, where=where)
    check_name(name, where=where, what='field "name"')
    version = strict_json.require(custom, "version", str, where=where)
    check_version(version, where=where)
    platform = strict_json.require(custom, "platform", str, where=where)
    if not _PLATFORM.fullmatch(platform):
        raise StrictJSONError(f'{where}: field "platform" is {show(platform)}')
    return name, version, platform


def _requirements(
    custom: dict[str, Any], *, where: str
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The host modules and the plugins (with version specifiers, sorted) it requires."""
    requires = strict_json.require(custom, "requires", dict, where=where)
    hosts = strict_json.optional(requires, "host", list, [], where=f"{where}: requires")
    host_modules = tuple(
        check_name(h, where=where, what=f'item {i} of field "requires.host"')
        for i, h in enumerate(hosts, 1)
    )
    wanted = strict_json.optional(requires, "plugins", dict, {}, where=f"{where}: requires")
    plugin_requires: list[tuple[str, str]] = []
    for dep, spec in wanted.items():
        check_name(dep, where=where, what='a key of field "requires.plugins"')
        strict_json.expect(spec, str, where=where, what=f'field "requires.plugins.{dep}"')
        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            raise StrictJSONError(
                f'{where}: field "requires.plugins.{dep}" is {show(spec)}, which is not a'
                " version specifier"
            ) from None
        plugin_requires.append((dep, spec))
    return host_modules, tuple(sorted(plugin_requires))


def _publisher_fields(custom: dict[str, Any], *, where: str) -> tuple[str, str, str]:
    """The description, the publisher and the publisher's key id."""
    description = strict_json.require(custom, "description", str, where=where)
    if len(description) > _MAX_DESCRIPTION:
        raise StrictJSONError(f'{where}: field "description" is too long')
    publisher = strict_json.require(custom, "publisher", str, where=where)
    for field_name, text, allowed in (
        ("description", description, "\n\t"),
        ("publisher", publisher, ""),
    ):
        if any(not ch.isprintable() and ch not in allowed for ch in text):
            raise StrictJSONError(f'{where}: field "{field_name}" contains a control character')
    key_id = strict_json.require(custom, "publisher_key_id", str, where=where)
    if not is_key_id(key_id):
        raise StrictJSONError(f'{where}: field "publisher_key_id" is not a key id')
    return description, publisher, key_id


def _yank(custom: dict[str, Any], *, where: str) -> tuple[bool, str]:
    """Whether the release is yanked (``index yank``) and why: ``yanked`` is a boolean,
    ``yanked_reason`` printable text; a wrong type makes the entry malformed."""
    yanked = strict_json.optional(custom, "yanked", bool, False, where=where)
    reason = strict_json.optional(custom, "yanked_reason", str, "", where=where)
    if len(reason) > paths.MAX_YANK_REASON or any(not ch.isprintable() for ch in reason):
        raise StrictJSONError(f'{where}: field "yanked_reason" is too long or not printable')
    return yanked, reason if yanked else ""


def _signed_manifest(
    custom: dict[str, Any],
    artifact: TargetInfo,
    manifest: TargetInfo | None,
    release: tuple[str, str, str],
    *,
    where: str,
) -> TargetInfo:
    """The manifest target, once the target paths match the release (name, version,
    platform) and the manifest is the signed one the custom fields name."""
    name, version, platform = release
    manifest_path = strict_json.require(custom, "manifest", str, where=where)
    filename = artifact.filename
    expected = f"{name}/{version}/{platform}/"
    if not (
        _FILENAME.fullmatch(filename)
        and artifact.path == expected + filename
        and manifest_path == expected + paths.MANIFEST_FILENAME
    ):
        raise StrictJSONError(
            f"{where}: the target paths do not match the name, version and platform"
        )
    if manifest is None or manifest.path != manifest_path:
        raise StrictJSONError(f"{where}: the manifest target {manifest_path} is not signed")
    return manifest


def shadowed(top: Targets, target_path: str) -> str | None:
    """Why the top-level targets role's own entry for ``target_path`` is not taken: the path
    is delegated to a publisher role, which alone may list it (TUF would take the delegator's
    own entry first); None when it is not such an entry."""
    roles = top.delegations.roles if top.delegations is not None else None
    if target_path not in top.targets or not roles:
        return None
    for name, role in roles.items():
        if name.startswith(paths.PUBLISHER_ROLE_PREFIX) and role.is_delegated_path(target_path):
            return f"{target_path} is delegated to role {name}, but targets lists it itself"
    return None
