"""The signed plugin manifest: the DSSE payload that says what a plugin release is.

What it is for: :func:`parse_manifest` turns the *verified* payload bytes of a
``manifest.dsse.json`` into a :class:`Manifest` under the input rules of DESIGN.md;
:func:`manifest_to_bytes` is its inverse, the canonical bytes (sorted keys, compact
separators, UTF-8) that packaging signs. ``parse_manifest(manifest_to_bytes(m)) == m``
for every valid manifest, and :func:`manifest_to_bytes` refuses one that would not parse.

The payload is one JSON object, every field required except ``requires`` and
``capabilities``::

    {"name": "hosts", "version": "1.2.0", "publisher": "Safing", "description": "...",
     "types": ["resolver"],
     "requires": {"host": ["firewall"], "plugins": {"allowlist": ">=1,<2"}},
     "platform": "linux-x86_64",
     "artifact": {"filename": "hosts.pyz", "sha256": "<64 lowercase hex>", "size": 1234},
     "created": "2026-11-23T09:00:00Z",
     "capabilities": {"read": ["/etc/hosts"], "write": [], "network": [], "processes": false}}

``capabilities`` (:mod:`loader.capabilities`) is what the plugin may do beyond its own data
folder; absent means the minimum, and the minimum is never written, so a manifest that
declares nothing has the same bytes as before the field existed.

Every refusal is a :class:`ManifestError`: one sentence naming the source and the field
(dotted for nested fields, e.g. ``artifact.sha256``). Unknown fields are refused. The loader's
source is the plugin and the file, so a refusal reads ``plugin hosts: manifest.dsse.json:
field "artifact.size" ...``.

``artifact.filename`` is a plain file name that does not start with ``.``: the loader finds a
release's artifact as the one file beside ``manifest.dsse.json`` and skips hidden files, so a
dot-file artifact could be signed and published but never installed or run.

``created`` may not lie in the future by more than :data:`CREATED_SKEW` (clocks differ): a
release dated in the future means a wrong clock at the publisher's or a made-up date, and
users are shown that date. :func:`check_created` holds that rule and the *verifier* applies it
(:func:`loader.verify.verify_plugin`, with an injectable ``now``), not
:func:`parse_manifest`: parsing stays a pure function of the bytes, so the same bytes parse
the same on every machine and at every time (round trips, the index's intake), while
whether a release may be used *now* is decided where the clock is read, once.

What it leaves to others: verifying the signature (``keys``; parse only what was
verified), checking that the manifest's name and version are the ones asked for, that
the artifact's bytes match (the loader and installer), and resolving ``requires``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from keys import strict_json
from keys.errors import StrictJSONError
from loader.capabilities import Capabilities, parse_capabilities
from loader.errors import LoaderError
from loader.fields import check_name, check_types, check_unknown, check_version, show

__all__ = [
    "CREATED_SKEW",
    "MANIFEST_FILE",
    "Artifact",
    "Manifest",
    "ManifestError",
    "Requires",
    "check_created",
    "format_created",
    "manifest_to_bytes",
    "parse_manifest",
]

#: The signed manifest's file name, beside the artifact in a package and a release.
MANIFEST_FILE = "manifest.dsse.json"
#: How far ``created`` may lie ahead of the verifier's clock (clocks differ; the refusal
#: says "a day").
CREATED_SKEW = timedelta(days=1)

_FIELDS = (
    "name",
    "version",
    "publisher",
    "description",
    "types",
    "requires",
    "platform",
    "artifact",
    "created",
    "capabilities",
)
_PLATFORM = re.compile(r"any|[a-z0-9]+-[a-z0-9_]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MAX_PUBLISHER = 256
_MAX_DESCRIPTION = 4096
_MAX_SPECIFIER = 256


class ManifestError(LoaderError):
    """A manifest payload is malformed; the message names the source and the field."""


@dataclass(frozen=True)
class Artifact:
    """The one file a release ships: a plain file name, its SHA-256 (hex) and size."""

    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Requires:
    """What a plugin needs: host modules by name, other plugins with version specifiers.

    ``plugins`` is kept sorted by name (it is a JSON object, whose canonical form sorts).
    """

    host_modules: tuple[str, ...] = ()
    plugins: tuple[tuple[str, SpecifierSet], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "plugins", tuple(sorted(self.plugins, key=lambda p: p[0])))


@dataclass(frozen=True)
class Manifest:
    """One signed plugin release.

    ``version`` and ``created`` keep the strings as signed; ``parsed_version`` and
    ``created_at`` (UTC, aware) are derived from them on construction.
    """

    name: str
    version: str
    publisher: str
    description: str
    types: tuple[str, ...]
    requires: Requires
    platform: str
    artifact: Artifact
    created: str
    capabilities: Capabilities = field(default_factory=Capabilities)
    parsed_version: Version = field(init=False, repr=False, compare=False)
    created_at: datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed_version", Version(self.version))
        object.__setattr__(self, "created_at", _parse_created(self.created))


def format_created(moment: datetime) -> str:
    """The ``created`` string for ``moment`` (converted to UTC, whole seconds)."""
    if moment.tzinfo is None:
        raise ValueError("format_created() wants an aware datetime")
    return moment.astimezone(UTC).strftime(_CREATED_FORMAT)


def _parse_created(text: str) -> datetime:
    if not _CREATED.fullmatch(text):
        raise ValueError(f"{text!r} is not of the form 2026-11-23T09:00:00Z")
    return datetime.strptime(text, _CREATED_FORMAT).replace(tzinfo=UTC)


def _get(obj: dict[str, Any], key: str, kind: type, *, source: str, path: str) -> Any:
    if key not in obj:
        raise StrictJSONError(f'{source}: field "{path}" is missing')
    return strict_json.expect(obj[key], kind, where=source, what=f'field "{path}"')


def _text(value: str, *, source: str, path: str, limit: int, multiline: bool) -> str:
    if len(value) > limit:
        raise StrictJSONError(f'{source}: field "{path}" is longer than {limit} characters')
    allowed = "\n\t" if multiline else ""
    if any(not ch.isprintable() and ch not in allowed for ch in value):
        raise StrictJSONError(f'{source}: field "{path}" contains a control character')
    return value


def _requires(obj: dict[str, Any], name: str, source: str) -> Requires:
    if "requires" not in obj:
        return Requires()
    req = _get(obj, "requires", dict, source=source, path="requires")
    check_unknown(req, ("host", "plugins"), where=source, what='field "requires"')
    hosts: list[str] = []
    raw_hosts = (
        _get(req, "host", list, source=source, path="requires.host") if "host" in req else []
    )
    for i, item in enumerate(raw_hosts, 1):
        host = check_name(item, where=source, what=f'item {i} of field "requires.host"')
        if host in hosts:
            raise StrictJSONError(
                f'{source}: field "requires.host" lists the module {show(host)} twice'
            )
        hosts.append(host)
    plugins: list[tuple[str, SpecifierSet]] = []
    raw_plugins = (
        _get(req, "plugins", dict, source=source, path="requires.plugins")
        if "plugins" in req
        else {}
    )
    for key, value in raw_plugins.items():
        dep = check_name(key, where=source, what='a key of field "requires.plugins"')
        path = f'field "requires.plugins.{dep}"'
        strict_json.expect(value, str, where=source, what=path)
        if dep == name:
            raise StrictJSONError(f"{source}: {path} makes the plugin require itself")
        bad = (
            len(value) > _MAX_SPECIFIER
            or not value.isascii()
            or not value.isprintable()
            or (value.strip() != "" and any(not p.strip() for p in value.split(",")))
        )
        try:
            if bad:
                raise InvalidSpecifier(value)
            spec = SpecifierSet(value)
        except InvalidSpecifier as err:
            raise StrictJSONError(
                f"{source}: {path} is {show(value)}, which is not a PEP 440 version specifier"
            ) from err
        plugins.append((dep, spec))
    return Requires(host_modules=tuple(hosts), plugins=tuple(plugins))


def _artifact(obj: dict[str, Any], source: str) -> Artifact:
    art = _get(obj, "artifact", dict, source=source, path="artifact")
    check_unknown(art, ("filename", "sha256", "size"), where=source, what='field "artifact"')
    filename = _get(art, "filename", str, source=source, path="artifact.filename")
    if not _FILENAME.fullmatch(filename) or filename in (".", ".."):
        raise StrictJSONError(
            f'{source}: field "artifact.filename" is {show(filename)}, which is not a plain'
            " file name (1-128 of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.')"
        )
    if filename.startswith("."):
        raise StrictJSONError(
            f'{source}: field "artifact.filename" is {show(filename)}, a hidden file name'
            " (it starts with '.'), which the loader never loads"
        )
    digest = _get(art, "sha256", str, source=source, path="artifact.sha256")
    if not _SHA256.fullmatch(digest):
        raise StrictJSONError(
            f'{source}: field "artifact.sha256" is {show(digest)},'
            " which is not 64 lowercase hex digits"
        )
    size = _get(art, "size", int, source=source, path="artifact.size")
    if size < 0:
        raise StrictJSONError(f'{source}: field "artifact.size" is negative ({size})')
    return Artifact(filename=filename, sha256=digest, size=size)


def _manifest(payload: bytes, source: str) -> Manifest:
    obj = strict_json.loads(payload, source=source)
    strict_json.expect(obj, dict, where=source, what="the manifest")
    name = check_name(
        _get(obj, "name", str, source=source, path="name"), where=source, what='field "name"'
    )
    check_unknown(obj, _FIELDS, where=source, what="the manifest")
    version = _get(obj, "version", str, source=source, path="version")
    check_version(version, where=source)
    publisher = _get(obj, "publisher", str, source=source, path="publisher")
    if not publisher.strip():
        raise StrictJSONError(f'{source}: field "publisher" is empty')
    _text(publisher, source=source, path="publisher", limit=_MAX_PUBLISHER, multiline=False)
    description = _get(obj, "description", str, source=source, path="description")
    _text(description, source=source, path="description", limit=_MAX_DESCRIPTION, multiline=True)
    types = check_types(
        _get(obj, "types", list, source=source, path="types"), where=source, non_empty=True
    )
    requires = _requires(obj, name, source)
    platform = _get(obj, "platform", str, source=source, path="platform")
    if not _PLATFORM.fullmatch(platform):
        raise StrictJSONError(
            f'{source}: field "platform" is {show(platform)}, which is neither "any"'
            ' nor of the form "linux-x86_64"'
        )
    artifact = _artifact(obj, source)
    created = _get(obj, "created", str, source=source, path="created")
    try:
        _parse_created(created)
    except ValueError as err:
        raise StrictJSONError(
            f'{source}: field "created" is {show(created)}, which is not an RFC 3339 UTC time'
            " like 2026-11-23T09:00:00Z"
        ) from err
    capabilities = (
        parse_capabilities(obj["capabilities"], where=source)
        if "capabilities" in obj
        else Capabilities()
    )
    return Manifest(
        name=name,
        version=version,
        publisher=publisher,
        description=description,
        types=types,
        requires=requires,
        platform=platform,
        artifact=artifact,
        created=created,
        capabilities=capabilities,
    )


def parse_manifest(payload: bytes, *, source: str) -> Manifest:
    """Parse verified manifest payload bytes; refuse anything off the format.

    Raises :class:`ManifestError` (one sentence naming ``source`` and the field).
    """
    try:
        return _manifest(payload, source)
    except StrictJSONError as err:
        raise ManifestError(str(err)) from err


def check_created(manifest: Manifest, *, source: str, now: datetime) -> None:
    """Refuse a manifest ``created`` more than :data:`CREATED_SKEW` after ``now``.

    Why apart from :func:`parse_manifest`: parsing is a pure function of the bytes; this rule
    depends on the verifying machine's clock, which only the verifier reads (and tests set).
    Raises :class:`ManifestError` (one sentence naming ``source`` and the field).
    """
    if now.tzinfo is None:
        raise ValueError("check_created() wants an aware datetime")
    if manifest.created_at > now + CREATED_SKEW:
        raise ManifestError(
            f'{source}: field "created" is {manifest.created}, more than a day after this'
            f" machine's clock ({format_created(now)}); check the clock, or ask the publisher"
            " to sign the release again with the right time"
        )


def _to_json(manifest: Manifest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": manifest.name,
        "version": manifest.version,
        "publisher": manifest.publisher,
        "description": manifest.description,
        "types": list(manifest.types),
        "requires": {
            "host": list(manifest.requires.host_modules),
            "plugins": {name: str(spec) for name, spec in manifest.requires.plugins},
        },
        "platform": manifest.platform,
        "artifact": {
            "filename": manifest.artifact.filename,
            "sha256": manifest.artifact.sha256,
            "size": manifest.artifact.size,
        },
        "created": manifest.created,
    }
    if not manifest.capabilities.is_minimum():  # absent: the bytes of every older manifest
        out["capabilities"] = manifest.capabilities.to_json()
    return out


def manifest_to_bytes(manifest: Manifest) -> bytes:
    """The canonical payload bytes of ``manifest``: what packaging signs.

    Sorted keys, compact separators, UTF-8. Raises :class:`ManifestError` if the manifest
    would be refused by :func:`parse_manifest` (so nothing unparseable is ever signed).
    """
    data = json.dumps(
        _to_json(manifest), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    again = parse_manifest(data, source=f"the manifest of {show(manifest.name)}")
    if again != manifest:
        raise ValueError(f"the manifest of {show(manifest.name)} does not survive a round trip")
    return data
