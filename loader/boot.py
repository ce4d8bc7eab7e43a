"""The loader's decision at boot: which configured plugins may run, as what, needing what.

Why this exists: `pm-plugins verify` and `pm-plugins boot` must reach the same verdicts, and
a refusal must name its one reason. `plan_boot` reads `plugins.json`, and for every entry:

1. finds the installed release (`plugins/<name>/<version>/`: the entry's version, else the
   lock's, else the only one installed);
2. reads the signed manifest and the artifact once each (no symlinks, bounded) and hands
   the bytes to `verify_plugin` (signature, trust, revocation, name/version/platform,
   SHA-256): the bytes verified are the bytes later sealed and executed;
3. checks declared dependencies: host modules by name, other plugins by name and version
   specifier, transitively, and cycles.

It starts nothing and writes nothing. One bad entry never hides the others: each gets its
row, and only the entries whose status `runs` are booted.
"""

from __future__ import annotations

import enum
import hashlib
import os
import platform as platform_module
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from keys.store import TrustStore
from loader.binding import lock_mismatch, privilege_refusal, types_refusal
from loader.errors import LoaderError
from loader.home import Home
from loader.lockfile import Locked, read_lock
from loader.manifest import MANIFEST_FILE as MANIFEST_FILE  # the loader's name for it too
from loader.manifest import Manifest
from loader.order import find_cycle, unsatisfied
from loader.plugins_json import PluginEntry, read_plugins_file
from loader.sealed import read_once
from loader.verify import Status, Verdict, verify_plugin

MAX_MANIFEST_BYTES = 1 << 20
MAX_ARTIFACT_BYTES = 512 << 20


class PlanStatus(enum.StrEnum):
    """A row's status: the verification statuses plus the loader's own refusals."""

    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    INVALID_SIGNATURE = "invalid-signature"
    UNTRUSTED_KEY = "untrusted-key"
    REVOKED_KEY = "revoked-key"
    MODIFIED = "modified"
    MALFORMED_MANIFEST = "malformed-manifest"
    NOT_INSTALLED = "not-installed"
    NAME_TAKEN = "name-taken"
    REFUSED_DEPENDENCY = "refused-dependency"
    LOCK_MISMATCH = "lock-mismatch"
    BAD_ENTRY = "bad-entry"


@dataclass
class PlannedPlugin:
    """One plugins.json entry and what the loader decided about it."""

    entry: PluginEntry
    status: PlanStatus
    reason: str
    version: str | None = None
    directory: Path | None = None
    verdict: Verdict | None = None
    artifact: bytes | None = field(default=None, repr=False)  # the verified bytes
    needs: tuple[str, ...] = ()
    locked: Locked | None = None  # the lock's record of it

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def runs(self) -> bool:
        return self.status in (PlanStatus.VERIFIED, PlanStatus.UNSIGNED) and (
            self.verdict is not None and self.verdict.runs
        )

    @property
    def manifest(self) -> Manifest | None:
        return self.verdict.manifest if self.verdict is not None else None

    @property
    def types(self) -> tuple[str, ...]:
        """The entry's types (a narrowing of the manifest's: see loader.binding), else the
        signed manifest's."""
        if self.entry.types:
            return self.entry.types
        return self.manifest.types if self.manifest is not None else ()

    @property
    def privilege_refusal(self) -> str | None:
        """Why plugins.json's `"privileged": true` does not take effect (loader.binding)."""
        return privilege_refusal(self.entry, self.verdict, self.locked)

    @property
    def privileged(self) -> bool:
        return self.entry.privileged and self.privilege_refusal is None

    @property
    def key_id(self) -> str | None:
        return self.verdict.key_id if self.verdict is not None else None

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every trusted key whose signature verified (a threshold may need several)."""
        return self.verdict.key_ids if self.verdict is not None else ()

    @property
    def trust_level(self) -> str | None:
        return self.verdict.trust_level if self.verdict is not None else None


@dataclass
class BootPlan:
    """Every configured plugin's row, in plugins.json order, and a file-level error if any."""

    plugins: list[PlannedPlugin]
    error: str | None = None  # plugins.json or plugins.lock could not be read: nothing runs
    warnings: list[str] = field(default_factory=list)  # e.g. unknown fields of plugins.json

    def runnable(self) -> list[PlannedPlugin]:
        return [p for p in self.plugins if p.runs]

    @property
    def ok(self) -> bool:
        return self.error is None and all(p.runs for p in self.plugins)


def this_platform() -> str:
    """The platform tag a manifest names, e.g. `linux-x86_64`."""
    system = platform_module.system().lower() or "unknown"
    machine = platform_module.machine().lower().replace("amd64", "x86_64") or "unknown"
    return f"{system}-{machine}"


def plan_boot(
    home: Home,
    *,
    trust: TrustStore,
    dev_mode: bool,
    core_modules: Mapping[str, str],
    platform: str | None = None,
    threshold: int = 1,
) -> BootPlan:
    """Decide, for every entry of `home`'s plugins.json, whether and how it may run.

    `core_modules` maps the host's own modules to their versions (what `requires.host`
    may name); `threshold` is how many distinct trusted keys must have signed each manifest.
    Raises nothing for a bad plugin or entry (each gets its row); an unreadable
    plugins.json or plugins.lock is `BootPlan.error` (the lock binds: without it nothing
    can be shown to be what was installed).
    """
    try:
        found = read_plugins_file(home.plugins_json)
        locked = read_lock(home.lock_file)
    except LoaderError as err:
        return BootPlan([], error=str(err))
    target = platform or this_platform()
    rows = [
        PlannedPlugin(
            e,
            PlanStatus.NAME_TAKEN,
            f"plugin {e.name} has the name of a host module; a plugin cannot replace one",
        )
        if e.name in core_modules
        else _verify_entry(home, e, trust, dev_mode, locked.get(e.name), target, threshold)
        for e in found.entries
    ]
    rows += [
        PlannedPlugin(
            PluginEntry(bad.name or f"entry-{bad.index}"), PlanStatus.BAD_ENTRY, bad.reason
        )
        for bad in found.refused
    ]
    _check_dependencies(rows, core_modules)
    return BootPlan(rows, warnings=found.warnings)


# -- one entry ------------------------------------------------------------------------------


def release_dir_of(home: Home, entry: PluginEntry, locked: Locked | None) -> tuple[str, Path]:
    """The installed release an entry means: its version, else the lock's (`locked`), else
    the only one installed. Raises LoaderError naming what is missing or ambiguous."""
    base = home.plugins_dir / entry.name
    wanted = entry.version or (locked.version if locked is not None else None)
    if wanted is not None:
        directory = base / wanted
        if not directory.is_dir() or directory.is_symlink():
            raise LoaderError(f"plugin {entry.name} {wanted} is not installed (no {directory})")
        return wanted, directory
    try:
        versions = sorted(
            (p.name for p in base.iterdir() if p.is_dir() and not p.is_symlink()),
            key=_version_key,
        )
    except FileNotFoundError:
        versions = []
    if not versions:
        raise LoaderError(f"plugin {entry.name} is not installed (no {base})")
    if len(versions) > 1:
        raise LoaderError(
            f"plugin {entry.name} has versions {', '.join(versions)} installed and "
            f'plugins.json names none; add "version" to its entry'
        )
    return versions[0], base / versions[0]


def _version_key(text: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def artifact_path(directory: Path, name: str) -> Path:
    """The release's one artifact: the only regular file besides the manifest."""
    files = []
    for item in sorted(directory.iterdir()):
        if item.name == MANIFEST_FILE or item.name.startswith("."):
            continue
        info = item.lstat()
        if stat.S_ISREG(info.st_mode):
            files.append(item)
        else:
            raise LoaderError(f"plugin {name}: {item} is not a regular file")
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise LoaderError(
            f"plugin {name}: {directory} must hold exactly one artifact besides "
            f"{MANIFEST_FILE} (found: {found})"
        )
    return files[0]


def _verify_entry(
    home: Home,
    entry: PluginEntry,
    trust: TrustStore,
    dev_mode: bool,
    locked: Locked | None,
    platform: str,
    threshold: int,
) -> PlannedPlugin:
    try:
        version, directory = release_dir_of(home, entry, locked)
        envelope = _read_manifest(directory, entry.name)
        artifact_file = artifact_path(directory, entry.name)
        artifact = read_once(artifact_file, MAX_ARTIFACT_BYTES)
    except LoaderError as err:
        return PlannedPlugin(entry, PlanStatus.NOT_INSTALLED, str(err))
    verdict = verify_plugin(
        name=entry.name,
        envelope=envelope,
        artifact=artifact,
        trust=trust,
        dev_mode=dev_mode,
        version=version,
        platform=platform,
        threshold=threshold,
    )
    row = PlannedPlugin(
        entry,
        PlanStatus(verdict.status.value),
        verdict.reason,
        version=version,
        directory=directory,
        verdict=verdict,
        locked=locked,
    )
    if not verdict.runs:
        return row
    refusal = _refusal_of(row, artifact_file.name, hashlib.sha256(artifact).hexdigest(), dev_mode)
    if refusal is not None:
        row.status, row.reason = refusal
        row.verdict = _refusal(verdict) if refusal[0] is not PlanStatus.MODIFIED else None
        return row
    row.artifact = artifact
    manifest = verdict.manifest
    if manifest is not None:
        row.needs = manifest.requires.host_modules + tuple(n for n, _ in manifest.requires.plugins)
    return row


def _refusal_of(
    row: PlannedPlugin, artifact_name: str, digest: str, dev_mode: bool
) -> tuple[PlanStatus, str] | None:
    """Why a verified row may still not run: its artifact's name, the lock, its types."""
    entry, manifest, verdict = row.entry, row.manifest, row.verdict
    assert verdict is not None and row.version is not None
    if manifest is not None and manifest.artifact.filename != artifact_name:
        return PlanStatus.MODIFIED, (
            f"plugin {entry.name}'s artifact is named {artifact_name}, the signed "
            f"manifest says {manifest.artifact.filename}"
        )
    bound = lock_mismatch(entry.name, row.version, digest, verdict, row.locked, dev_mode=dev_mode)
    if bound:
        return PlanStatus.LOCK_MISMATCH, bound
    if why := types_refusal(entry, manifest):
        return PlanStatus.BAD_ENTRY, why
    if verdict.status is Status.UNSIGNED and not entry.types:
        return PlanStatus.UNSIGNED, (
            f'plugin {entry.name} is unsigned and its plugins.json entry lists no "types"'
        )
    return None


def _refusal(verdict: Verdict) -> Verdict:
    """The verdict, refused; the verified manifest stays (what it requires is still true)."""
    return Verdict(
        verdict.status,
        verdict.reason,
        runs=False,
        key_id=verdict.key_id,
        key_ids=verdict.key_ids,
        trust_level=verdict.trust_level,
        manifest=verdict.manifest,
    )


def _read_manifest(directory: Path, name: str) -> bytes | None:
    path = directory / MANIFEST_FILE
    try:
        os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise LoaderError(f"plugin {name}: {path} cannot be read ({err.strerror})") from err
    return read_once(path, MAX_MANIFEST_BYTES)


# -- dependencies ---------------------------------------------------------------------------


def _check_dependencies(rows: list[PlannedPlugin], core_modules: Mapping[str, str]) -> None:
    """Refuse rows whose requirements cannot be met: missing, wrong version, cycle, or a
    dependency that is itself refused (transitively). Names in `core_modules` are the host's."""
    runnable = {r.name: r for r in rows if r.runs}
    reasons: dict[str, str] = {}
    for row in runnable.values():
        manifest = row.manifest
        if manifest is None:
            continue
        for dep, spec in manifest.requires.plugins:
            why = _version_problem(dep, spec, runnable.get(dep), rows)
            if why is not None:
                reasons[row.name] = f"plugin {row.name} needs {dep}{spec}, {why}"
                break
    deps: dict[str, tuple[str, ...]] = {name: row.needs for name, row in runnable.items()}
    deps |= {name: () for name in core_modules if name not in deps}
    remaining = {n: d for n, d in deps.items() if n not in reasons}
    while (cycle := find_cycle(remaining)) is not None:
        for name in cycle[:-1]:
            reasons.setdefault(
                name,
                f"plugin {name} is part of a dependency cycle ({' -> '.join(cycle)})",
            )
            remaining.pop(name, None)
    for name, why in unsatisfied(remaining, {n: "is refused" for n in reasons}).items():
        if name not in core_modules:
            reasons[name] = f"plugin {name} cannot start: {why}"
    for name, reason in reasons.items():
        row = runnable[name]
        row.status, row.reason, row.artifact = PlanStatus.REFUSED_DEPENDENCY, reason, None
        if row.verdict is not None:
            row.verdict = _refusal(row.verdict)


def _version_problem(
    dep: str, spec: SpecifierSet, found: PlannedPlugin | None, rows: list[PlannedPlugin]
) -> str | None:
    if found is None:
        configured = next((r for r in rows if r.name == dep), None)
        if configured is None:
            return "which is not configured in plugins.json"
        return f"which cannot run ({configured.status.value})"
    if found.version is None:
        return None
    try:
        version = Version(found.version)
    except InvalidVersion:
        return f"but its version {found.version!r} is not a PEP 440 version"
    if not spec.contains(version, prereleases=True):
        return f"but {dep} {found.version} is installed"
    return None
