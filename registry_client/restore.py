"""`pm-plugins install --locked`: install exactly what plugins.lock records, on a new machine.

Why this exists: plugins.json and plugins.lock copied to another machine name releases that
are not on its disk. As `cargo build --locked` or `terraform init` do, this installs each
missing release at the lock's version, from the registry the lock names (any configured one
when it names none), and refuses any release whose artifact SHA-256 or signers differ from
the lock's: the lock binds on the new machine as it does at boot. Everything the registry
install checks (TUF, the publisher's signature against the trust store) still holds; nothing
is installed unless every locked release passed.
"""

from __future__ import annotations

from collections.abc import Sequence

from packaging.version import InvalidVersion, Version

from loader.boot import this_platform
from loader.home import Home
from loader.journal import reading
from loader.lockfile import Locked, read_lock
from registry_client.reading import InstallError, Release
from registry_client.registry_install import Chosen
from registry_client.tuf_client import RegistryClient

__all__ = ["check_locked", "locked_to_restore", "releases_for"]


def locked_to_restore(home: Home) -> dict[str, Locked]:
    """The lock's releases that are not on disk."""
    with reading(home):
        locked = read_lock(home.lock_file)
    return {n: e for n, e in locked.items() if not home.release_dir(n, e.version).is_dir()}


def releases_for(wanted: dict[str, Locked], clients: Sequence[RegistryClient]) -> list[Chosen]:
    """Each locked release, found at its exact version in its registry (this platform's
    build first). Raises InstallError naming the first one no registry has."""
    platform = this_platform()
    out = []
    for name, locked in sorted(wanted.items()):
        where = [c for c in clients if locked.registry in (None, c.name)]
        if not where:
            raise InstallError(
                f"plugins.lock says {name} {locked.version} came from registry "
                f"{locked.registry}, which is not configured; add it with `pm-plugins "
                "registry add`"
            )
        found = [
            Chosen(r, c.name)
            for c in where
            for r in c.find(name)
            if _same_version(r.version, locked.version) and r.platform in (platform, "any")
        ]
        if not found:
            names = ", ".join(c.name for c in where)
            raise InstallError(f"{name} {locked.version} (locked) is not in registry {names}")
        found.sort(key=lambda c: c.release.platform != platform)
        out.append(found[0])
    return out


def check_locked(wanted: dict[str, Locked]) -> _Check:
    """The check a downloaded, verified release must pass to be the locked one."""
    return _Check(wanted)


class _Check:
    def __init__(self, wanted: dict[str, Locked]) -> None:
        self._wanted = wanted

    def __call__(self, release: Release) -> None:
        locked = self._wanted.get(release.name)
        if locked is None:
            return
        label = f"{release.name} {release.version}"
        digest = release.manifest.artifact.sha256 if release.manifest else ""
        if digest != locked.sha256:
            raise InstallError(
                f"refusing {label}: it is not the locked release (its artifact's SHA-256 is "
                f"{digest[:12]}..., plugins.lock records {locked.sha256[:12]}...)"
            )
        missing = [k for k in locked.signers if k not in release.key_ids]
        if missing:
            raise InstallError(
                f"refusing {label}: plugins.lock records it signed by {missing[0][:12]}..., "
                "whose signature on it does not verify with your trust store"
            )


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b
