"""Which registry a plugin comes from: every configured registry side by side.

Why this exists: with several registries, taking a plugin from the first one that lists it
lets any registry shadow the others (the embedded example index hid a real registry's newer
`hosts`), and one registry that cannot be reached stopped search, info, install and upgrade
for all of them. Here:

- the releases of a plugin are the union of every registry's; the newest release that fits
  wins wherever it is; for the same version in several registries, a real registry's wins
  over the embedded example one, then the order of `registries.json`;
- a plugin whose lock entry names its registry comes from that registry alone (a release of
  the same name elsewhere is another publisher's business), as does every plugin when the
  user passes `--registry NAME`;
- where the index delegates a plugin to a publisher role, its manifest must be signed by a
  key of that role (:func:`publisher_role`): another key the user trusts cannot publish it
  through that registry;
- a registry that cannot be reached is a warning (one sentence) while another one can serve;
  `search` and `info` may read its cached signed metadata instead (:class:`CacheFetcher`:
  TUF verifies it again, expiry included, and nothing new is fetched), with a note.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

from index import paths
from index.keyring import public_key_of
from keys import ed25519
from loader.home import Home
from loader.lockfile import Locked
from registry_client import registries
from registry_client.default_index import REGISTRY_NAME as EMBEDDED
from registry_client.resolve import Candidate
from registry_client.tuf_client import RegistryClient, RegistryError
from registry_client.tuf_client import Release as IndexRelease

__all__ = ["CacheFetcher", "Chosen", "IndexView", "open_clients", "publisher_role"]

Progress = Callable[[str], None]
_VERSIONED = re.compile(r"\d+\.(?P<role>.+)\.json")


@dataclass(frozen=True)
class Chosen:
    """A release picked for installation and the registry it comes from."""

    release: IndexRelease
    registry: str


class IndexView(Mapping[str, Sequence[Candidate]]):
    """The releases of every registry for this platform, looked up one plugin at a time
    (lazily), each version from the registry that should serve it (module docstring)."""

    def __init__(
        self,
        clients: list[RegistryClient],
        platform: str,
        *,
        locked: Mapping[str, Locked] | None = None,
        only: str | None = None,
    ) -> None:
        self._clients = sorted(clients, key=lambda c: c.name == EMBEDDED)  # stable
        self._platform = platform
        self._locked = locked or {}
        self._only = only
        self._found: dict[str, list[Candidate]] = {}
        self.releases: dict[tuple[str, Version], Chosen] = {}

    def __getitem__(self, name: str) -> Sequence[Candidate]:
        if name not in self._found:
            self._found[name] = self._lookup(name)
        if not self._found[name]:
            raise KeyError(name)
        return self._found[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._found)

    def __len__(self) -> int:
        return len(self._found)

    def _sources(self, name: str) -> list[RegistryClient]:
        entry = self._locked.get(name)
        pinned = self._only or (entry.registry if entry is not None else None)
        if pinned is None or all(c.name != pinned for c in self._clients):
            return self._clients  # an unknown or unreachable pin falls back to all
        return [c for c in self._clients if c.name == pinned]

    def _lookup(self, name: str) -> list[Candidate]:
        best: dict[Version, Chosen] = {}
        for client in self._sources(name):
            for release in client.find(name):
                if release.platform not in (self._platform, "any"):
                    continue
                try:
                    version = Version(release.version)
                except InvalidVersion:
                    continue
                held = best.get(version)
                if held is None or (
                    held.registry == client.name and release.platform == self._platform
                ):
                    best[version] = Chosen(release, client.name)
        out = []
        for version, chosen in best.items():
            self.releases[(name, version)] = chosen
            requires = tuple(
                (dep, SpecifierSet(spec)) for dep, spec in chosen.release.plugin_requires
            )
            out.append(Candidate(name, version, requires, yanked=chosen.release.yanked))
        return out


def open_clients(
    home: Home, progress: Progress, *, cached_ok: bool = False
) -> list[RegistryClient]:
    """Every configured registry that can be read, refreshed (TUF: root, timestamp,
    snapshot, targets). One that cannot be reached is a warning; with `cached_ok`, its
    cached signed metadata is read instead. Raises RegistryError when none can be read."""
    configured = registries.read_registries(home)
    if not configured:
        raise RegistryError(
            "no registry is configured; add one with `pm-plugins registry add NAME URL "
            "--root root.json`"
        )
    clients, failures = [], []
    for registry in configured:
        client = registries.client(home, registry)
        try:
            state = client.refresh()
        except RegistryError as err:
            cached = _cached(home, registry) if cached_ok else None
            if cached is not None:
                progress(f"note: {err}; showing its cached signed metadata instead")
                clients.append(cached)
            else:
                failures.append(str(err))
                progress(f"warning: {err}; going on without registry {registry.name}")
            continue
        progress(f"registry {registry.name}: index version {state.snapshot_version}")
        clients.append(client)
    if not clients:
        raise RegistryError(failures[0] if len(failures) == 1 else "; ".join(failures))
    return clients


def _cached(home: Home, registry: registries.Registry) -> RegistryClient | None:
    cache = registries.cache_dir(home, registry.name)
    client = RegistryClient(
        registry.name, registry.url, cache, fetcher=CacheFetcher(cache / "metadata")
    )
    try:
        client.refresh()
    except RegistryError:
        return None
    return client


class CacheFetcher(FetcherInterface):
    """Serves a registry's metadata from its own cache, so TUF verifies what it verified
    before, expiry included: no newer root, the cached timestamp, snapshot and targets
    roles; no target file."""

    def __init__(self, metadata_dir: Path) -> None:
        self.metadata_dir = metadata_dir

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = unquote(url.rsplit("/", 1)[-1])
        match = _VERSIONED.fullmatch(name)
        role = match.group("role") if match else name.removesuffix(".json")
        if (match and role == "root") or "/targets/" in url or "/" in role:
            raise exceptions.DownloadHTTPError(f"{name} is not in the cache", 404)
        try:
            data = (self.metadata_dir / f"{role}.json").read_bytes()
        except OSError:
            raise exceptions.DownloadHTTPError(f"{name} is not in the cache", 404) from None
        return iter([data])


def publisher_role(client: RegistryClient, name: str) -> tuple[str, frozenset[str]] | None:
    """The publisher role the registry's verified top-level targets delegate plugin `name`
    to, and the ids of its keys (computed from the keys, never taken from the metadata's
    labels); None when the plugin is not delegated."""
    targets = client._ready()._trusted_set.targets  # verified by refresh
    delegations = targets.delegations
    if delegations is None or delegations.roles is None:
        return None
    path = paths.releases_path(name)
    for role in delegations.roles.values():
        if not role.name.startswith(paths.PUBLISHER_ROLE_PREFIX) or not role.is_delegated_path(
            path
        ):
            continue
        ids = set()
        for kid in role.keyids:
            key = delegations.keys.get(kid)
            if key is not None and key.keytype == "ed25519":
                ids.add(ed25519.key_id(public_key_of(key)))
        return role.name, frozenset(ids)
    return None
