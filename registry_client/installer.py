"""Install and remove plugin releases in the state root, atomically and one at a time.

Why this exists: the user's promise is "nothing half-installed, ever". An install:

1. takes the state root's file lock (concurrent runs wait for each other) and finishes a
   change a crash interrupted (`loader.journal`);
2. reads the package's manifest and artifact once and verifies them with the loader's own
   check (`verify_plugin`: signature, threshold, trust, revocation, platform, SHA-256);
3. refuses, before writing anything, a host module's name, other bytes under an installed
   signed version, a version a dependent excludes, wider capabilities without consent;
4. writes exactly the verified bytes into a staging folder next to `plugins/*`, fsyncs,
   and renames it to `plugins/<name>/<version>/`;
5. records the new plugins.json and plugins.lock in one journal file: that rename is the
   commit point. Before it, a failure takes back the folders this install put in place;
   after it, the change is finished now or by the next reader;
6. last, removes the releases it replaced.

Reading and verifying a package (step 2) is :mod:`registry_client.reading`, what may be
replaced (step 3) :mod:`registry_client.replacing`; this module writes. `install NAME` of the
registry uses it once TUF has downloaded a package. Installing the same releases again
rewrites nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from keys._fs import exchange
from loader import journal
from loader.boot import MANIFEST_FILE
from loader.capabilities import Capabilities
from loader.home import Home
from loader.journal import changing, commit
from loader.lockfile import Locked, dumps_lock, read_lock
from loader.plugins_json import PluginEntry, dumps_plugins_json, read_plugins_json
from registry_client.consent import Consent, check_consent
from registry_client.reading import (
    InstallError,
    Release,
    _claimed_manifest,
    installed_requirements,
    read_package,
)
from registry_client.replacing import Permission, is_downgrade, keeps_signer, refuse_replacing

__all__ = [
    "InstallError",
    "InstallResult",
    "Release",
    "install",
    "install_many",
    "installed_requirements",
    "read_package",
    "uninstall",
]


@dataclass
class InstallResult:
    name: str
    version: str
    directory: Path
    key_id: str | None
    trust_level: str | None
    replaced: str | None = None  # the version it replaced
    downgrade: bool = False  # it replaced a newer version
    unchanged: bool = False  # the same release was already installed
    missing: list[str] = field(default_factory=list)  # required plugins not configured
    signed_by: str = ""  # Release.signers()
    capabilities: Capabilities = field(default_factory=Capabilities)  # what it declares


def install(home: Home, release: Release) -> InstallResult:
    """Put `release` in place and make plugins.json and plugins.lock name it."""
    (result,) = install_many(home, [release])
    return result


def install_many(
    home: Home,
    releases: list[Release],
    *,
    consent: Consent | None = None,
    allowed: Permission | None = None,
) -> list[InstallResult]:
    """Install several verified releases as one change: every release directory is put in
    place first, then plugins.json and plugins.lock are replaced once (the commit), then
    the releases they replaced are removed. A failure before the commit takes back what
    this call put in place; a crash leaves the old configuration or the new one.

    Refused, before anything is written: a host module's name; a signed release that
    differs from the installed one of the same version (a release never changes); a
    downgrade or a new signer that `allowed` (`replacing.ask_permission`) does not cover; a
    version that an installed plugin's requirement excludes; a release asking for more
    than the installed version that `consent` (`consent.ask_consent`) does not cover.
    """
    with changing(home):
        entries = read_plugins_json(home.plugins_json)
        locked = read_lock(home.lock_file)
        refuse_replacing(home, releases, locked, allowed or Permission())
        _refuse(home, releases, locked)
        check_consent(home, releases, locked, consent)
        created: list[Path] = []  # new release folders, taken back on failure
        swapped: list[tuple[Path, Path]] = []  # (final, old copy) of dev rebuilds
        try:
            results, entries = _place_all(home, releases, entries, locked, created, swapped)
            new = dumps_plugins_json(entries), dumps_lock(locked)
            if not created and not swapped and new == _current(home):
                return results  # the same releases again: nothing is rewritten
            journal.record(home, *new)
        except BaseException:  # not committed: take back what this call put in place
            _take_back(home, created, swapped)
            raise
        journal.apply(home)  # committed: a crash from here on is finished by the next reader
        _finish(home, releases, results, entries, swapped)
        return results


def _place_all(
    home: Home,
    releases: list[Release],
    entries: list[PluginEntry],
    locked: dict[str, Locked],
    created: list[Path],
    swapped: list[tuple[Path, Path]],
) -> tuple[list[InstallResult], list[PluginEntry]]:
    """Put every release in place and name it in plugins.json and the lock (`entries` and
    `locked`, not written yet); `created` and `swapped` hear what to take back on failure."""
    results: list[InstallResult] = []
    for release in releases:
        previous = locked.get(release.name)
        result = _place(home, release, previous, created, swapped)
        old_types = _types_before(home, release.name, previous, entries)
        entries = _with_entry(entries, release, old_types)
        locked[release.name] = _locked(release, previous)
        results.append(result)
    return results, entries


def _locked(release: Release, previous: Locked | None) -> Locked:
    """The lock's record of `release`: its signers pin the plugin; the user's grants stay
    only while a pinned key still signs it."""
    digest = release.manifest.artifact.sha256 if release.manifest else _sha256(release)
    signers = release.key_ids or ((release.key_id,) if release.key_id else ())
    grants = previous.grants if previous is not None and keeps_signer(release, previous) else ()
    return Locked(release.version, digest, tuple(signers), release.registry, grants)


def _place(
    home: Home,
    release: Release,
    previous: Locked | None,
    created: list[Path],
    swapped: list[tuple[Path, Path]],
) -> InstallResult:
    """Put one release's folder in place, unless it is already there; `previous` is what
    the lock named for its plugin."""
    final = home.release_dir(release.name, release.version)
    result = InstallResult(
        release.name,
        release.version,
        final,
        release.key_id,
        release.trust_level,
        signed_by=release.signers(),
        capabilities=release.manifest.capabilities if release.manifest else Capabilities(),
    )
    if previous is not None and previous.version != release.version:
        result.replaced = previous.version
        result.downgrade = is_downgrade(release.version, previous.version)
    if _same_release(final, release):
        result.unchanged = True
    elif final.exists() and previous is not None and previous.version == release.version:
        swapped.append((final, _swap_in(home, final, release)))  # unsigned rebuild
    else:
        if final.exists():  # left by an install that never committed: garbage
            _remove_tree(home, final)
        _put_in_place(home, final, release)
        created.append(final)
    return result


def _take_back(home: Home, created: list[Path], swapped: list[tuple[Path, Path]]) -> None:
    """Before the commit: exchange dev rebuilds back and remove the new release folders."""
    for final, old in reversed(swapped):
        exchange(old, final)
        _remove_tree(home, old.parent)
    for final in created:
        _remove_tree(home, final)


def _finish(
    home: Home,
    releases: list[Release],
    results: list[InstallResult],
    entries: list[PluginEntry],
    swapped: list[tuple[Path, Path]],
) -> None:
    """After the commit: remove what the releases replaced; name missing requirements."""
    for _, old in swapped:
        _remove_tree(home, old.parent)
    configured = {e.name for e in entries}
    for release, result in zip(releases, results, strict=True):
        _remove_other_versions(home, release.name, keep=release.version)
        if release.manifest is not None:
            needed = [n for n, _ in release.manifest.requires.plugins]
            result.missing = [n for n in needed if n not in configured]


def _refuse(home: Home, releases: list[Release], locked: dict[str, Locked]) -> None:
    """A release never changes: other bytes under an installed signed version are refused."""
    for release in releases:
        final = home.release_dir(release.name, release.version)
        current = locked.get(release.name)
        is_installed = current is not None and current.version == release.version
        signed = release.envelope is not None or (current is not None and current.signer)
        if is_installed and signed and final.exists() and not _same_release(final, release):
            if current is not None and not current.signer:
                raise InstallError(
                    f"{release.name} {release.version} is installed as an unsigned dev build; "
                    f"a signed release of the same version does not replace it: run "
                    f"`pm-plugins uninstall {release.name}`, then install the signed package"
                )
            raise InstallError(
                f"{release.name} {release.version} is already installed with other "
                f"bytes; a release never changes: give the new build a new version, or "
                f"uninstall {release.name} first"
            )


def _types_before(
    home: Home, name: str, previous: Locked | None, entries: list[PluginEntry]
) -> tuple[str, ...] | None:
    """What the release being replaced declared (None: unknown, keep the entry's types)."""
    if previous is None:
        return None
    if previous.signer is None:  # an unsigned dev build: its types came from its source
        return next((e.types for e in entries if e.name == name), None)
    manifest = _claimed_manifest(home.release_dir(name, previous.version))
    return manifest.types if manifest is not None else None


def uninstall(home: Home, name: str, *, force: bool = False) -> str:
    """Remove plugin `name` (its entry, lock line and files); returns the removed version.

    Refused while another configured plugin requires it, unless `force`.
    """
    with changing(home):
        entries = read_plugins_json(home.plugins_json)
        locked = read_lock(home.lock_file)
        if name not in locked and all(e.name != name for e in entries):
            raise InstallError(f"plugin {name} is not installed")
        dependents = [
            other
            for other, (_, requires) in installed_requirements(home).items()
            if other != name and any(dep == name for dep, _ in requires)
        ]
        if dependents and not force:
            raise InstallError(
                f"plugin {name} is required by {', '.join(sorted(dependents))}; uninstall "
                f"those first or pass --force"
            )
        version = locked[name].version if name in locked else "?"
        locked.pop(name, None)
        commit(home, dumps_plugins_json([e for e in entries if e.name != name]), dumps_lock(locked))
        _remove_tree(home, home.plugins_dir / name)
        return version


# -- helpers --------------------------------------------------------------------------------


def _current(home: Home) -> tuple[bytes, bytes] | None:
    try:
        return home.plugins_json.read_bytes(), home.lock_file.read_bytes()
    except OSError:
        return None


def _sha256(release: Release) -> str:
    return hashlib.sha256(release.artifact).hexdigest()


def _same_release(final: Path, release: Release) -> bool:
    """Whether `final` already holds exactly these bytes (a repeated install is a no-op)."""
    try:
        same_artifact = (final / release.artifact_name).read_bytes() == release.artifact
        manifest = final / MANIFEST_FILE
        same_manifest = (
            manifest.read_bytes() == release.envelope
            if release.envelope is not None
            else not manifest.exists()
        )
    except OSError:
        return False
    others = {p.name for p in final.iterdir()} - {release.artifact_name, MANIFEST_FILE}
    return same_artifact and same_manifest and not others


def _stage(home: Home, release: Release) -> Path:
    """The release's files, written and synced in a fresh folder next to `plugins/*`."""
    home.plugins_dir.mkdir(mode=0o755, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=home.plugins_dir))
    try:
        _write(staging / release.artifact_name, release.artifact, 0o755)
        if release.envelope is not None:
            _write(staging / MANIFEST_FILE, release.envelope, 0o644)
        os.chmod(staging, 0o755)
        _fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _put_in_place(home: Home, final: Path, release: Release) -> None:
    staging = _stage(home, release)
    try:
        final.parent.mkdir(mode=0o755, exist_ok=True)
        os.rename(staging, final)  # never over an existing release (install_many checks)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(home: Home, final: Path, release: Release) -> Path:
    """Replace an unsigned dev build in one atomic exchange; returns where the old one is
    now (a folder to delete after the commit, or to exchange back on failure)."""
    holder = Path(tempfile.mkdtemp(prefix=".old-", dir=home.plugins_dir))
    staging = _stage(home, release)
    new = holder / "release"
    os.rename(staging, new)
    exchange(new, final)
    return new


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(home: Home, path: Path) -> None:
    """Rename aside first (atomic), then delete: no half-deleted release under its name."""
    if not path.exists():
        return
    trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=home.plugins_dir))
    os.rename(path, trash / "gone")
    shutil.rmtree(trash, ignore_errors=True)


def _remove_other_versions(home: Home, name: str, keep: str) -> None:
    base = home.plugins_dir / name
    for item in base.iterdir():
        if item.name != keep:
            _remove_tree(home, item)


def _with_entry(
    entries: list[PluginEntry], release: Release, old_types: tuple[str, ...] | None
) -> list[PluginEntry]:
    """plugins.json with `release` named: an existing entry keeps its config and choices;
    its types follow the new release unless the user changed them (`old_types`: what the
    release it replaces declared)."""
    out = []
    found = False
    for entry in entries:
        if entry.name == release.name:
            found = True
            follow = old_types is not None and entry.types == old_types
            entry = PluginEntry(
                entry.name,
                release.types if follow else entry.types,
                entry.config,
                entry.privileged,
                entry.disable_autostart,
                release.version,
            )
        out.append(entry)
    if not found:
        out.append(PluginEntry(release.name, release.types, version=release.version))
    return out
