"""What `search` finds: the newest release of every plugin a text names, across registries.

Why this exists: the command line (`pm-plugins search`) and the dashboard's search box must
rank the same way; a release that is not yanked comes before any yanked one, then the newest
version (PEP 440; a version that is not one sorts first), whichever registry it is in.
"""

from __future__ import annotations

from collections.abc import Iterable

from packaging.version import InvalidVersion, Version

from registry_client.releases import Release
from registry_client.tuf_client import RegistryClient

__all__ = ["newest_matching", "rank"]


def newest_matching(clients: Iterable[RegistryClient], text: str) -> list[tuple[str, Release]]:
    """(registry name, release) of the newest release of each plugin whose name or
    description contains `text` (case-insensitive), sorted by plugin name."""
    needle = text.lower()
    newest: dict[str, tuple[str, Release]] = {}
    for client in clients:
        for release in client.releases():
            if needle not in f"{release.name} {release.description}".lower():
                continue
            seen = newest.get(release.name)
            if seen is None or rank(release) > rank(seen[1]):
                newest[release.name] = (client.name, release)
    return sorted(newest.values(), key=lambda found: found[1].name)


def rank(release: Release) -> tuple[bool, Version]:
    """A release's place in "newest first": not yanked before yanked, then the version."""
    try:
        version = Version(release.version)
    except InvalidVersion:
        version = Version("0")
    return not release.yanked, version
