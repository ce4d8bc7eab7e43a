"""The user side of a registry: TUF-verified metadata, search, resolve and download.

What it is for: :class:`RegistryClient` wraps python-tuf's ``ngclient.Updater`` for one
registry (a name, a base URL and a cache folder). Every byte it returns was verified
by TUF against the trusted root: metadata signatures, thresholds, versions (no
rollback), expiry, and each target's length and hashes. Every TUF, download and cache
failure becomes a :class:`RegistryError` whose message is one sentence naming the
registry and what was wrong.

The index it reads (written by ``index``) is laid out as :mod:`index.paths` says:

- ``<base>/metadata/``: ``N.root.json``, ``timestamp.json``, ``N.snapshot.json``,
  ``N.targets.json``, ``N.<role>.json`` (consistent snapshots);
- ``<base>/targets/<dir>/<sha256>.<basename>``;
- per plugin, ``<name>/releases.json``: its ``custom`` field lists every release
  (artifact path, length, hashes and descriptive fields; manifest path, length,
  hashes); each artifact ``<name>/<version>/<platform>/<file>`` carries the same fields
  in its own ``custom``: name, version, platform, types, requires, description,
  publisher, publisher_key_id and manifest (the manifest's target path), and, for a
  yanked release, ``yanked`` (true) and ``yanked_reason`` (:mod:`registry_client.resolve`).

Cold install of one plugin, hash bins or not: :meth:`RegistryClient.find` looks up the
one target ``<name>/releases.json`` through TUF's delegation walk, so it downloads root
(a probe for the next version), timestamp, snapshot, targets and, with hash bins, the
``bins`` role and the *one* bin that path hashes to; :meth:`download` then fetches the
artifact with the length and hashes from that same signed entry, without loading the
artifact's own bin. :meth:`releases` (search) loads every role, all bins included.

A plugin delegated to a publisher is looked up only in that publisher's role (the
delegation is terminating); targets a role holds outside the paths delegated to it are
never returned (:meth:`releases` checks each target against TUF's own lookup and
records a warning in :attr:`RegistryClient.warnings`).

Metadata bytes are also read by :mod:`keys.strict_json` before TUF parses them
(duplicate keys, NaN, bad UTF-8 refused), and ``custom`` fields are checked with exact
types; a malformed release entry is skipped with a warning.

Fetchers (:mod:`registry_client.fetchers`): :class:`RequestsFetcher` (a
``requests.Session``: timeouts, retries on connection errors, proxies from the
environment) and :class:`FileFetcher` for a local copy of the index (a folder or a
``file://`` URL). Both count requests and bytes and give every file a deadline and a
byte bound. Targets are downloaded by :mod:`registry_client.downloads` (a cap on the
declared length, resume, the length and hash check); metadata by TUF. The release model
and the checks of the ``custom`` fields are :mod:`registry_client.releases`.

Cache: ``<cache_dir>/metadata`` holds ngclient's trusted metadata (``root.json`` is the
trust anchor after :meth:`RegistryClient.bootstrap`). The client is single-instance per
cache folder, like ngclient.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from tuf.api import exceptions

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import TargetFile, Targets  # type: ignore[attr-defined]
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from index import paths
from keys import strict_json
from keys.errors import StrictJSONError
from loader.fields import show
from registry_client import downloads
from registry_client.fetchers import FileFetcher, RequestsFetcher
from registry_client.refusals import refusal
from registry_client.releases import (
    _FILENAME,
    IndexState,
    Release,
    TargetInfo,
    _release,
    _target_info,
    shadowed,
)

__all__ = [
    "FileFetcher",
    "IndexState",
    "RegistryClient",
    "RegistryError",
    "Release",
    "RequestsFetcher",
    "TargetInfo",
]


class RegistryError(Exception):
    """A registry cannot be used as asked; the message is one sentence for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _base_url(registry: str, url: str) -> tuple[str, bool]:
    """The index base URL ending in "/", and whether it is local (file://)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url.rstrip("/") + "/", False
    if parts.scheme == "file":
        return url.rstrip("/") + "/", True
    if parts.scheme == "" and url:
        return Path(url).resolve().as_uri().rstrip("/") + "/", True
    raise RegistryError(
        f"registry {registry}: {show(url)} is not an http(s) or file:// URL or a folder"
    )


# -- the client ------------------------------------------------------------------------------


class RegistryClient:
    """One registry: ``name`` (for messages), ``url`` (http(s), ``file://`` or a folder
    holding ``metadata/`` and ``targets/``) and ``cache_dir`` (its trusted metadata).

    ``trusted_root`` (bytes or a file) is the trust anchor if given; otherwise the root
    cached by :meth:`bootstrap` (and every root it has verified since) is.
    """

    def __init__(
        self,
        name: str,
        url: str,
        cache_dir: Path,
        trusted_root: bytes | Path | None = None,
        *,
        fetcher: FetcherInterface | None = None,
        config: UpdaterConfig | None = None,
    ) -> None:
        self.name = name
        self.url, local = _base_url(name, url)
        self.cache_dir = Path(cache_dir)
        self.metadata_dir = self.cache_dir / "metadata"
        self.fetcher = fetcher or (FileFetcher() if local else RequestsFetcher())
        self.config = config or UpdaterConfig()
        self.warnings: list[str] = []
        self._root: bytes | None
        if isinstance(trusted_root, Path):
            try:
                self._root = trusted_root.read_bytes()
            except OSError as e:
                raise RegistryError(
                    f"registry {name}: the root file {trusted_root} cannot be read"
                    f" ({e.strerror or e})"
                ) from e
        else:
            self._root = trusted_root
        if self._root is None and not (self.metadata_dir / "root.json").exists():
            raise RegistryError(
                f"registry {name} has no trusted root in {self.cache_dir}; add the registry"
                " with its root.json first"
            )
        self._updater: Updater | None = None

    @classmethod
    def bootstrap(
        cls,
        name: str,
        url: str,
        cache_dir: Path,
        root: bytes | Path,
        *,
        fetcher: FetcherInterface | None = None,
    ) -> RegistryClient:
        """Trust ``root`` for registry ``name`` from now on: check it is a root signed by
        its own keys, forget metadata cached under an earlier trust anchor, store it."""
        cache = Path(cache_dir)
        client = cls(name, url, cache, root, fetcher=fetcher)
        with client._refusing("storing its root"):
            cache.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".bootstrap-", dir=cache))
        try:
            checking = cls(name, url, staging, root, fetcher=fetcher)
            with client._refusing("checking its root"):
                checking._new_updater()  # verifies the root and stores it
                if client.metadata_dir.exists():
                    shutil.rmtree(client.metadata_dir)
                os.replace(checking.metadata_dir, client.metadata_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        client._root = None
        return client

    # -- TUF plumbing -----------------------------------------------------------------------

    def _new_updater(self) -> Updater:
        try:
            self.metadata_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RegistryError(
                f"registry {self.name}: the cache folder {self.metadata_dir} cannot be"
                f" created ({e.strerror or e})"
            ) from e
        return Updater(
            str(self.metadata_dir),
            self.url + "metadata/",
            target_dir=None,
            target_base_url=self.url + "targets/",
            fetcher=self.fetcher,
            config=self.config,
            bootstrap=self._root,
        )

    @contextmanager
    def _refusing(self, doing: str) -> Iterator[None]:
        """Turn every TUF, download and cache failure into one :class:`RegistryError`."""
        try:
            yield
        except RegistryError:
            raise
        except (exceptions.RepositoryError, exceptions.DownloadError, OSError) as e:
            raise RegistryError(
                refusal(
                    e,
                    registry=self.name,
                    where=f"registry {self.name}: {doing}",
                    last_url=lambda: getattr(self.fetcher, "last_url", "") or self.url,
                    updater=self._updater,
                )
            ) from e

    def _ready(self) -> Updater:
        if self._updater is None:
            self.refresh()
        assert self._updater is not None
        return self._updater

    # -- public API -------------------------------------------------------------------------

    def refresh(self) -> IndexState:
        """Fetch and verify root (each newer version), timestamp, snapshot and targets."""
        self.warnings = []
        try:
            with self._refusing("updating the index"):
                self._updater = self._new_updater()
                self._updater.refresh()
        except RegistryError:
            self._updater = None  # an Updater refreshes once: the next call starts afresh
            raise
        trusted = self._updater._trusted_set
        return IndexState(
            registry=self.name,
            root_version=trusted.root.version,
            timestamp_version=trusted.timestamp.version,
            snapshot_version=trusted.snapshot.version,
            targets_version=trusted.targets.version,
            timestamp_expires=trusted.timestamp.expires,
        )

    def _all_roles(self, updater: Updater) -> list[tuple[str, Targets]]:
        """Load every targets role reachable from ``targets`` (all hash bins too)."""
        out: list[tuple[str, Targets]] = []
        stack: list[tuple[str, str]] = [("targets", "root")]
        visited: set[str] = set()
        while stack:
            role, parent = stack.pop()
            if role in visited:
                continue
            visited.add(role)
            targets = updater._load_targets(role, parent)
            out.append((role, targets))
            delegations = targets.delegations
            if delegations is None:
                continue
            if delegations.roles is not None:
                stack.extend((r, role) for r in reversed(list(delegations.roles)))
            elif delegations.succinct_roles is not None:
                names = list(delegations.succinct_roles.get_roles())
                stack.extend((r, role) for r in reversed(names))
        return out

    def list_targets(self) -> list[TargetInfo]:
        """Every target a TUF lookup returns, across all roles (loads every role)."""
        updater = self._ready()
        found: dict[str, TargetInfo] = {}
        decided: dict[str, TargetFile | None] = {}
        with self._refusing("listing the index"):
            for role, targets in self._all_roles(updater):
                for target_path, tf in targets.targets.items():
                    if target_path not in decided:
                        decided[target_path] = updater.get_targetinfo(target_path)
                    authoritative = decided[target_path]
                    if authoritative != tf:
                        self.warnings.append(
                            f"registry {self.name}: role {role} lists {target_path}, but it is"
                            " not the role trusted to sign that path; its entry is ignored"
                        )
                    elif target_path not in found:
                        found[target_path] = TargetInfo.of(tf)
        return sorted(found.values(), key=lambda t: t.path)

    def releases(self) -> list[Release]:
        """Every valid release in the index (for search); loads every role."""
        targets = {t.path: t for t in self.list_targets()}
        out: list[Release] = []
        for info in targets.values():
            if not isinstance(info.custom, dict) or "manifest" not in info.custom:
                continue
            manifest_path = info.custom.get("manifest")
            manifest = targets.get(manifest_path) if isinstance(manifest_path, str) else None
            try:
                out.append(_release(info, manifest, where=f"target {info.path}"))
            except StrictJSONError as e:
                self.warnings.append(f"registry {self.name}: {e.message}; ignored")
        return sorted(out, key=lambda r: (r.name, r.version, r.platform))

    def find(self, name: str) -> list[Release]:
        """The releases of plugin ``name`` (all versions and platforms), from its signed
        ``<name>/releases.json`` entry: one hash bin at most. [] if there are none."""
        if not paths.is_name(name):
            raise RegistryError(f"{show(name)} is not a plugin name")
        updater = self._ready()
        target_path = paths.releases_path(name)
        with self._refusing(f"looking up {name}"):
            tf = updater.get_targetinfo(target_path)
        shadow = shadowed(updater._trusted_set.targets, target_path)
        if shadow is not None:  # only the publisher's role may list a delegated plugin
            self.warnings.append(f"registry {self.name}: {shadow}; ignored")
        if tf is None or shadow is not None:
            return []
        where = f"target {target_path}"
        out: list[Release] = []
        try:
            custom = strict_json.expect(tf.custom, dict, where=where, what='the "custom" field')
            entries = strict_json.require(custom, "releases", list, where=where)
        except StrictJSONError as e:
            self.warnings.append(f"registry {self.name}: {e.message}; ignored")
            return []
        for i, entry in enumerate(entries, 1):
            at = f"{where}: release {i}"
            try:
                strict_json.expect(entry, dict, where=at, what="the entry")
                artifact = _target_info(
                    strict_json.require(entry, "artifact", dict, where=at), where=at
                )
                manifest = _target_info(
                    strict_json.require(entry, "manifest", dict, where=at), where=at
                )
                release = _release(artifact, manifest, where=at)
                if release.name != name:
                    raise StrictJSONError(f"{at}: it is a release of {release.name}")
            except StrictJSONError as e:
                self.warnings.append(f"registry {self.name}: {e.message}; ignored")
                continue
            out.append(release)
        return out

    def target(self, target_path: str) -> TargetInfo:
        """The signed description of one target; a path not in the index is refused."""
        updater = self._ready()
        with self._refusing(f"looking up {target_path}"):
            tf = updater.get_targetinfo(target_path)
        if tf is None:
            raise RegistryError(f"registry {self.name}: {target_path} is not in the signed index")
        return TargetInfo.of(tf)

    def download(
        self,
        target: str | TargetInfo,
        dest_dir: Path,
        *,
        filename: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
        cap: downloads.Cap = downloads.ARTIFACT_CAP,
        partials: downloads.Partials | None = None,
    ) -> Path:
        """Download a target into ``dest_dir`` (as its base name, or ``filename``) once
        its length and hashes match the signed metadata; nothing is left on failure but a
        resumable part in ``partials`` (:mod:`registry_client.downloads`). A declared
        length over ``cap`` is refused before any request. ``on_bytes`` hears the size of
        every chunk received (a progress bar)."""
        updater = self._ready()
        info = self.target(target) if isinstance(target, str) else target
        name = filename or info.filename
        if not _FILENAME.fullmatch(name) or name in (".", ".."):
            raise RegistryError(f"registry {self.name}: {show(name)} is not a plain file name")
        refused = downloads.too_large(info, cap)
        if refused is not None:
            raise RegistryError(f"registry {self.name}: {refused}")
        dest = Path(dest_dir) / name
        with self._refusing(f"downloading {info.path}"):
            dest.parent.mkdir(parents=True, exist_ok=True)
            url = downloads.target_url(updater, self.url + "targets/", info)
            downloads.fetch_target(
                self.fetcher, url, info, dest, partials=partials, on_bytes=on_bytes
            )
        return dest
