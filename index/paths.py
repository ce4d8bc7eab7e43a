"""Names in the index: target paths, role names and the checks on their parts.

Why it exists: the maintainer side (``index``) and the user side
(``registry_client.tuf_client``) must agree on one layout, and every part of a path
comes from a manifest somebody else wrote, so it is checked with ``re.fullmatch``
before it becomes part of a URL or a file name.

Target paths (relative to ``<index>/targets/``; with consistent snapshots each file is
served as ``<dir>/<sha256>.<basename>``)::

    <name>/releases.json                               the release list of one plugin
    <name>/<version>/<platform>/<artifact filename>    the artifact (custom: see below)
    <name>/<version>/<platform>/manifest.dsse.json     the publisher's signed manifest

Roles: ``targets`` (top level), ``publisher-<publisher>`` (one delegated role per
publisher, paths ``<name>/*`` and ``<name>/*/*/*`` for each of its plugins),
``bins`` (delegated by ``targets`` for every path, present with hash bins) and its
succinct hash bins ``bin-<hex>``.
"""

from __future__ import annotations

import re

__all__ = [
    "BINS_ROLE",
    "BIN_PREFIX",
    "MANIFEST_FILENAME",
    "PUBLISHER_ROLE_PREFIX",
    "RELEASES_FILENAME",
    "TOP_ROLES",
    "artifact_path",
    "check_filename",
    "check_name",
    "check_platform",
    "check_publisher",
    "check_version",
    "delegation_patterns",
    "is_name",
    "manifest_path",
    "publisher_role",
    "release_dir",
    "releases_path",
]

MANIFEST_FILENAME = "manifest.dsse.json"
RELEASES_FILENAME = "releases.json"
BINS_ROLE = "bins"
BIN_PREFIX = "bin"
PUBLISHER_ROLE_PREFIX = "publisher-"
TOP_ROLES = ("root", "targets", "snapshot", "timestamp")
#: The longest yank reason: `index yank` refuses a longer one, and so does the client.
MAX_YANK_REASON = 200

# The plugin name rule of plugins.json and manifests (loader.fields.NAME_PATTERN).
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# The characters of a PEP 440 version (the manifest parser checks the grammar itself).
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.!+_-]{0,63}")
_PLATFORM = re.compile(r"any|[a-z0-9]+-[a-z0-9_]+")
_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PUBLISHER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PathPartError(ValueError):
    """A name, version, platform, file name or publisher is not allowed in a path."""


def is_name(text: str) -> bool:
    """Whether ``text`` is a plugin name."""
    return _NAME.fullmatch(text) is not None


def _check(pattern: re.Pattern[str], value: str, what: str, rule: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise PathPartError(f"{what} {value!r} is not allowed ({rule})")
    return value


def check_name(value: str) -> str:
    return _check(_NAME, value, "plugin name", "a-z, 0-9, '_' and '-', at most 64")


def check_version(value: str) -> str:
    _check(_VERSION, value, "version", "a PEP 440 version")
    if value.endswith(".") or ".." in value:
        raise PathPartError(f"version {value!r} is not allowed (a PEP 440 version)")
    return value


def check_platform(value: str) -> str:
    return _check(_PLATFORM, value, "platform", '"any" or like "linux-x86_64"')


def check_filename(value: str) -> str:
    _check(_FILENAME, value, "file name", "A-Z, a-z, 0-9, '.', '_' and '-'")
    if value in (".", "..") or value in (MANIFEST_FILENAME, RELEASES_FILENAME):
        raise PathPartError(f"file name {value!r} is reserved")
    return value


def check_publisher(value: str) -> str:
    return _check(_PUBLISHER, value, "publisher", "A-Z, a-z, 0-9, '.', '_' and '-'")


def release_dir(name: str, version: str, platform: str) -> str:
    return f"{check_name(name)}/{check_version(version)}/{check_platform(platform)}"


def artifact_path(name: str, version: str, platform: str, filename: str) -> str:
    return f"{release_dir(name, version, platform)}/{check_filename(filename)}"


def manifest_path(name: str, version: str, platform: str) -> str:
    return f"{release_dir(name, version, platform)}/{MANIFEST_FILENAME}"


def releases_path(name: str) -> str:
    return f"{check_name(name)}/{RELEASES_FILENAME}"


def publisher_role(publisher: str) -> str:
    return PUBLISHER_ROLE_PREFIX + check_publisher(publisher)


def delegation_patterns(name: str) -> list[str]:
    """The TUF path patterns that give a publisher every target of plugin ``name``."""
    check_name(name)
    return [f"{name}/*", f"{name}/*/*/*"]
