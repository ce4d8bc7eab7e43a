"""`install NAME[SPEC]...` and `upgrade`: resolve from the index, download through TUF,
verify like the loader, install as one change.

Why this exists: it is the user's main job and it joins three checks that must all hold:
TUF says the bytes are the ones the registry published (length and hashes from signed
metadata); the publisher's signature on the manifest verifies against the user's trust
store (the loader's own `verify_plugin`); and the installer puts everything in place
atomically. Nothing is installed unless every chosen release passed both checks, and a
release that asks for more capabilities than the installed version had the user's consent
(:mod:`registry_client.consent`).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from keys.dsse import envelope_from_bytes, verify
from keys.errors import KeysError
from keys.store import TrustStore
from loader.boot import MANIFEST_FILE, MAX_MANIFEST_BYTES, this_platform
from loader.capabilities import Capabilities
from loader.errors import LoaderError
from loader.home import Home
from loader.lockfile import read_lock
from loader.manifest import parse_manifest
from loader.sealed import read_once
from loader.verify import MANIFEST_PAYLOAD_TYPE as PAYLOAD_TYPE
from registry_client.consent import Ask, ask_consent
from registry_client.downloads import MANIFEST_CAP, WorkArea
from registry_client.installer import (
    InstallError,
    InstallResult,
    Release,
    install_many,
    installed_requirements,
    read_package,
)
from registry_client.replacing import Replacing
from registry_client.resolve import ResolutionError, Want, parse_request, resolve
from registry_client.sources import Chosen, IndexView, open_clients, publisher_role
from registry_client.tuf_client import RegistryClient, RegistryError
from registry_client.tuf_client import Release as IndexRelease

Progress = Callable[[str], None]
#: Makes a progress bar for one download: (label, total bytes) -> a context manager giving
#: the callable that hears each chunk's size. None: plain lines only (not a terminal).
BarFactory = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


def choose(
    home: Home,
    requests: Sequence[str],
    clients: list[RegistryClient],
    *,
    pre: bool = False,
    upgrade: bool = False,
    note: Progress | None = None,
    registry: str | None = None,
) -> list[Chosen]:
    """Resolve `requests` against the index; returns the releases to install (those not
    already installed at that version). An `upgrade` never goes down: a plugin whose
    newest release in the index is older than the installed one is kept, with a `note`.
    Releases come from every registry (registry_client.sources), or from `registry` alone."""
    parsed = [parse_request(r) for r in requests]
    locked = read_lock(home.lock_file)
    installed = {  # what the lock names and is on disk (a lock copied alone installs nothing)
        n: Version(e.version) for n, e in locked.items() if home.release_dir(n, e.version).is_dir()
    }
    index = IndexView(clients, this_platform(), locked=locked, only=registry)
    if upgrade:
        narrowed = [(n, _not_down(n, spec, installed, index, note)) for n, spec in parsed]
        parsed = [(n, spec) for n, spec in narrowed if spec is not None]
    asked = {name for name, _ in parsed}
    keep = {n: v for n, v in installed.items() if not upgrade or n not in asked}
    constraints: dict[str, list[Want]] = {}
    for other, (version, requires) in installed_requirements(home).items():
        if other in asked:
            continue  # being replaced: its old requirements do not bind
        for dep, spec in requires:
            constraints.setdefault(dep, []).append(Want(spec, f"{other} {version} (installed)"))
    picked = resolve(parsed, index, pre=pre, installed=keep, constraints=constraints)
    out = []
    for name, candidate in picked.items():
        if installed.get(name) == candidate.version:
            continue
        out.append(index.releases[(name, candidate.version)])
    return out


def _check_delegation(client: RegistryClient, release: Release) -> None:
    """A plugin the registry delegates to a publisher role is that role's to sign."""
    role = publisher_role(client, release.name)
    if role is None or set(release.key_ids) & role[1]:
        return
    signers = ", ".join(f"{k[:12]}..." for k in release.key_ids) or "no key you trust"
    raise InstallError(
        f"refusing {release.name} {release.version}: registry {client.name} delegates "
        f"{release.name} to role {role[0]}, and its manifest is signed by {signers}, not by "
        "a key of that role"
    )


def _not_down(
    name: str,
    spec: SpecifierSet,
    installed: Mapping[str, Version],
    index: IndexView,
    note: Progress | None,
) -> SpecifierSet | None:
    """`spec`, narrowed to the installed version or newer; None (with a note) when the
    index has nothing that new."""
    current = installed.get(name)
    if current is None:
        return spec
    versions = [c.version for c in index.get(name, ()) if not c.yanked]  # never an upgrade
    if not any(v >= current for v in versions):
        newest = max(versions, default=None)
        if note is not None:
            what = f"its newest release there is {newest}" if newest else "it is not there"
            if newest is None and index.get(name):
                what = "every release of it there is yanked"
            note(f"keeping {name} {current}: {what} in the registries, and upgrade never goes down")
        return None
    return spec & SpecifierSet(f">={current}")


def install_from_index(
    home: Home,
    chosen: Sequence[Chosen],
    clients: list[RegistryClient],
    *,
    trust: TrustStore,
    progress: Progress,
    bar: BarFactory | None = None,
    threshold: int = 1,
    allow_capabilities: bool = False,
    ask: Ask | None = None,
    replacing: Replacing | None = None,
    check: Callable[[Release], None] | None = None,
) -> list[InstallResult]:
    """Download every chosen release through TUF, verify each publisher signature, then
    install them all as one change. Any refusal leaves the state root as it was; `check`
    may refuse a verified release too (raising InstallError), e.g. one not the locked one.

    A release asking for more capabilities than the installed version is allowed by
    `allow_capabilities` or by `ask` (the terminal's question), else refused
    (`consent.ask_consent`); the question comes after verification, on the signed asks.
    A downgrade or a new signer is allowed only as `replacing` says
    (`replacing.ask_permission`), asked after verification too."""
    by_name = {c.name: c for c in clients}
    home.ensure()
    work = WorkArea(home)  # sweeps what a killed run left; removed below, whatever happens
    try:
        verified = []
        for pick in chosen:
            release = pick.release
            client = by_name[pick.registry]
            label = f"{release.name} {release.version}"
            if release.yank_note is not None:  # only a pin or the lock picks one
                progress(f"warning: {release.yank_note}")
            package = _download(pick, client, work, progress, bar)
            candidate = read_package(
                package,
                trust=trust,
                dev_mode=False,
                expect=(release.name, release.version),
                threshold=threshold,
            )
            progress(f"verified {label}: signed by {candidate.signers()}")
            _check_delegation(client, candidate)
            if check is not None:
                check(candidate)
            verified.append(dataclasses.replace(candidate, registry=pick.registry))
        allowed = (replacing or Replacing()).ask_about(home, verified)
        consent = ask_consent(home, verified, allow=allow_capabilities, ask=ask)
        return install_many(home, verified, consent=consent, allowed=allowed)
    finally:
        work.close()


def _download(
    pick: Chosen,
    client: RegistryClient,
    work: WorkArea,
    progress: Progress,
    bar: BarFactory | None,
) -> Path:
    """Download a chosen release's artifact and manifest into a folder of `work`."""
    release = pick.release
    label = f"{release.name} {release.version}"
    size = release.artifact.length
    package = work.path / f"{release.name}-{release.version}"
    if bar is None:
        progress(f"downloading {label} ({_size(size)}) from {pick.registry}")
        client.download(release.artifact, package, partials=work.partials)
    else:
        with bar(f"downloading {label}", size) as advance:
            client.download(release.artifact, package, on_bytes=advance, partials=work.partials)
    client.download(release.manifest, package, filename=MANIFEST_FILE, cap=MANIFEST_CAP)
    return package


@dataclass(frozen=True)
class IndexManifest:
    """A release's signed manifest as the index serves it, read before any install: what
    it declares, and which keys of the user's trust store verified it (only those: a
    signature entry naming a key proves nothing until it verifies)."""

    capabilities: Capabilities
    signers: tuple[str, ...]


def index_manifest(
    client: RegistryClient, release: IndexRelease, trust: TrustStore
) -> IndexManifest | None:
    """The manifest of `release` (downloaded through TUF into a temporary folder); None
    when it cannot be read or is another release's. The full check is the install's."""
    with tempfile.TemporaryDirectory(prefix="pm-plugins-manifest-") as tmp:
        path = client.download(
            release.manifest, Path(tmp), filename=MANIFEST_FILE, cap=MANIFEST_CAP
        )
        where = f"registry {client.name}: {release.manifest.path}"
        try:
            data = read_once(path, MAX_MANIFEST_BYTES)
            manifest = parse_manifest(envelope_from_bytes(data, source=where).payload, source=where)
        except (LoaderError, KeysError):
            return None
    if (manifest.name, manifest.version) != (release.name, release.version):
        return None
    try:
        verified = verify(data, trust.trusted_keys(), payload_type=PAYLOAD_TYPE, source=where)
        signers = tuple(verified.key_ids)
    except KeysError:
        signers = ()
    return IndexManifest(manifest.capabilities, signers)


def _size(n: int) -> str:
    """15 B, 6.6 kB, 104.9 MB."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


__all__ = [
    "Chosen",
    "IndexManifest",
    "InstallError",
    "RegistryError",
    "ResolutionError",
    "choose",
    "index_manifest",
    "install_from_index",
    "open_clients",
]
