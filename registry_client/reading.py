"""Reading releases: a package (or source) folder to install, and what installed ones claim.

Why this is its own module: everything the installer decides before writing rests on
reads. :func:`read_package` reads a package's manifest and artifact once and verifies them
with the loader's own check (`verify_plugin`: signature, threshold, trust, revocation,
platform, SHA-256), giving a :class:`Release` of exactly the verified bytes;
:func:`installed_requirements` reads what the configured plugins require, unverified, to
protect dependents. :mod:`registry_client.installer` writes; this module only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet

from keys.dsse import envelope_from_bytes
from keys.errors import KeysError
from keys.store import TrustStore
from loader.boot import (
    MANIFEST_FILE,
    MAX_ARTIFACT_BYTES,
    MAX_MANIFEST_BYTES,
    artifact_path,
    release_dir_of,
    this_platform,
)
from loader.capabilities import Capabilities
from loader.errors import LoaderError
from loader.home import Home
from loader.lockfile import read_lock
from loader.manifest import Manifest, parse_manifest
from loader.plugins_json import read_plugins_json
from loader.sealed import read_once
from loader.verify import verify_plugin
from registry_client.package import SOURCE_FILE, PackageError, read_source

__all__ = [
    "InstallError",
    "Release",
    "installed_capabilities",
    "installed_requirements",
    "read_package",
]


class InstallError(Exception):
    """An install or removal was refused; nothing was changed. One sentence."""


@dataclass(frozen=True)
class Release:
    """Verified bytes ready to be installed."""

    name: str
    version: str
    types: tuple[str, ...]
    artifact_name: str
    artifact: bytes
    envelope: bytes | None  # None: unsigned (dev mode only)
    key_id: str | None
    trust_level: str | None
    manifest: Manifest | None
    key_ids: tuple[str, ...] = ()  # every trusted signer (key_id is the first)
    registry: str | None = None  # the registry it was downloaded from; None from a path

    def signers(self) -> str:
        """`3fa2..., 9b1c... (official)`, or "UNSIGNED (dev mode)"."""
        if self.key_id is None:
            return "UNSIGNED (dev mode)"
        keys = ", ".join(f"{k[:12]}..." for k in self.key_ids or (self.key_id,))
        return f"{keys} ({self.trust_level})"


def read_package(
    path: Path,
    *,
    trust: TrustStore,
    dev_mode: bool,
    expect: tuple[str, str] | None = None,
    threshold: int = 1,
) -> Release:
    """Read a package directory (or, in dev mode, a plugin source directory) and verify it.

    `expect` (name, version): the release the index promised; the signed manifest must be
    that release's, and refusals name it.
    """
    if not path.is_dir():
        raise InstallError(f"{path} is not a package directory")
    if not (path / MANIFEST_FILE).exists():
        if (path / SOURCE_FILE).exists():
            return _read_source(path, dev_mode)
        raise InstallError(f"{path} is not a package: it has no {MANIFEST_FILE}")
    try:
        envelope = read_once(path / MANIFEST_FILE, MAX_MANIFEST_BYTES)
        artifact_file = artifact_path(path, path.name)
        artifact = read_once(artifact_file, MAX_ARTIFACT_BYTES)
    except LoaderError as err:
        raise InstallError(str(err)) from err
    verdict = verify_plugin(
        name=expect[0] if expect else None,
        version=expect[1] if expect else None,
        envelope=envelope,
        artifact=artifact,
        trust=trust,
        dev_mode=dev_mode,
        platform=this_platform(),
        threshold=threshold,
    )
    manifest = verdict.manifest
    if not verdict.runs or manifest is None:
        what = f"{expect[0]} {expect[1]}" if expect else str(path)
        raise InstallError(f"refusing to install {what}: {verdict.reason}")
    if manifest.artifact.filename != artifact_file.name:
        raise InstallError(
            f"refusing to install {path}: its artifact is named {artifact_file.name}, the "
            f"signed manifest says {manifest.artifact.filename}"
        )
    return Release(
        manifest.name,
        manifest.version,
        manifest.types,
        artifact_file.name,
        artifact,
        envelope,
        verdict.key_id,
        verdict.trust_level,
        manifest,
        verdict.key_ids,
    )


def _read_source(path: Path, dev_mode: bool) -> Release:
    if not dev_mode:
        raise InstallError(
            f"{path} is a plugin source directory, not a signed package; package it with "
            f"`pm-plugins package {path} --key KEY`, or install it unsigned with --dev-mode"
        )
    try:
        source = read_source(path)
    except PackageError as err:
        raise InstallError(str(err)) from err
    m = source.manifest
    return Release(
        m.name, m.version, m.types, m.artifact.filename, source.executable, None, None, None, m
    )


def installed_requirements(
    home: Home,
) -> dict[str, tuple[str, tuple[tuple[str, SpecifierSet], ...]]]:
    """Every configured plugin's installed version and the plugins it requires.

    Read from each release's manifest envelope without a trust decision and without
    hashing artifacts: this only protects dependents, so a manifest that does not verify
    (untrusted, refused, artifact missing) still counts.
    """
    locked = read_lock(home.lock_file)
    out = {}
    for entry in read_plugins_json(home.plugins_json):
        pinned = locked[entry.name].version if entry.name in locked else None
        directory: Path | None
        try:
            version, directory = release_dir_of(home, entry, locked.get(entry.name))
        except LoaderError:  # not (fully) installed: what the lock names, if anything
            version = pinned or ""
            directory = home.release_dir(entry.name, pinned) if pinned else None
        manifest = _claimed_manifest(directory)
        out[entry.name] = (version, manifest.requires.plugins if manifest is not None else ())
    return out


def installed_capabilities(home: Home, name: str, version: str) -> Capabilities:
    """What the installed release `version` of `name` declares, read from its manifest like
    `installed_requirements`; the minimum when it has none (an unsigned dev build) or it
    cannot be read, so that anything a new release asks counts as more."""
    manifest = _claimed_manifest(home.release_dir(name, version))
    return manifest.capabilities if manifest is not None else Capabilities()


def _claimed_manifest(directory: Path | None) -> Manifest | None:
    """The manifest a release claims, unverified (see `installed_requirements`)."""
    if directory is None:
        return None
    try:
        envelope = envelope_from_bytes(
            read_once(directory / MANIFEST_FILE, MAX_MANIFEST_BYTES), source=str(directory)
        )
        return parse_manifest(envelope.payload, source=str(directory))
    except (LoaderError, KeysError):
        return None
