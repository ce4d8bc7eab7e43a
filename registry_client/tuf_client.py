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
  publisher, publisher_key_id and manifest (the manifest's target path).

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

Fetchers: :class:`RequestsFetcher` (a ``requests.Session``: timeouts, retries on
connection errors, proxies from the environment) and :class:`FileFetcher` for a local
copy of the index (a folder or a ``file://`` URL). Both count requests and bytes.

Cache: ``<cache_dir>/metadata`` holds ngclient's trusted metadata (``root.json`` is the
trust anchor after :meth:`RegistryClient.bootstrap`). The client is single-instance per
cache folder, like ngclient.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from requests.adapters import HTTPAdapter
from tuf.api import exceptions

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import TargetFile, Targets  # type: ignore[attr-defined]
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater
from urllib3.util.retry import Retry

from index import paths
from keys import strict_json
from keys.errors import StrictJSONError
from keys.store import is_key_id
from loader.fields import check_name, check_types, check_version, show

__all__ = [
    "FileFetcher",
    "IndexState",
    "RegistryClient",
    "RegistryError",
    "Release",
    "RequestsFetcher",
    "TargetInfo",
]

_PLATFORM = re.compile(r"any|[a-z0-9]+-[a-z0-9_]+")
_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HASH_NAME = re.compile(r"[a-z0-9-]{1,32}")
_HEX = re.compile(r"[0-9a-f]{16,256}")
_MAX_DESCRIPTION = 4096


class RegistryError(Exception):
    """A registry cannot be used as asked; the message is one sentence for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _MalformedMetadataError(exceptions.RepositoryError):
    """Metadata bytes that are not strict JSON (see :mod:`keys.strict_json`)."""


# -- fetchers --------------------------------------------------------------------------------


class _CountingFetcher(FetcherInterface):
    """Counts requests and bytes, and reads metadata strictly before TUF parses it."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.bytes_received = 0
        self.on_chunk: Callable[[int], None] | None = None  # a download's progress

    @property
    def last_url(self) -> str:
        return self.urls[-1] if self.urls else ""

    def fetch(self, url: str) -> Iterator[bytes]:
        self.urls.append(url)
        return self._counted(super().fetch(url))

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.bytes_received += len(chunk)
            if self.on_chunk is not None:
                self.on_chunk(len(chunk))
            yield chunk

    def download_bytes(self, url: str, max_length: int) -> bytes:
        # ngclient downloads only metadata with download_bytes (targets use download_file).
        data = super().download_bytes(url, max_length)
        try:
            strict_json.loads(data, source=url.rsplit("/", 1)[-1], max_bytes=max(max_length, 1))
        except StrictJSONError as e:
            raise _MalformedMetadataError(e.message) from e
        return data


class FileFetcher(_CountingFetcher):
    """Reads ``file://`` URLs: a local copy of an index, verified exactly like HTTP."""

    def __init__(self, chunk_size: int = 1 << 20) -> None:
        super().__init__()
        self.chunk_size = chunk_size

    def _fetch(self, url: str) -> Iterator[bytes]:
        parts = urlsplit(url)
        if parts.scheme != "file":
            raise exceptions.DownloadError(f"{url} is not a file:// URL")
        path = url2pathname(parts.path)
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by the generator)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise exceptions.DownloadHTTPError(f"{path} does not exist", 404) from None
        except OSError as e:
            raise exceptions.DownloadError(f"{path}: {e.strerror or e}") from e
        return self._chunks(f)

    def _chunks(self, f: IO[bytes]) -> Iterator[bytes]:
        with f:
            while chunk := f.read(self.chunk_size):
                yield chunk


class RequestsFetcher(_CountingFetcher):
    """HTTP(S) with a ``requests.Session``: connect and read timeouts, ``retries`` on
    connection errors and on 502/503/504 (exponential ``backoff`` in seconds), proxies
    from the environment (``trust_env``)."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        chunk_size: int = 1 << 16,
        user_agent: str = "pm-plugins",
        session: requests.Session | None = None,
    ) -> None:
        super().__init__()
        self.timeout = (connect_timeout, read_timeout)
        self.chunk_size = chunk_size
        self.session = session or requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            backoff_factor=backoff,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = user_agent

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self.session.get(url, stream=True, timeout=self.timeout)
        except requests.Timeout as e:
            raise exceptions.SlowRetrievalError(f"{url} timed out") from e
        except requests.RequestException as e:
            raise exceptions.DownloadError(_reason(e)) from e
        if response.status_code != 200:
            response.close()
            raise exceptions.DownloadHTTPError(f"HTTP {response.status_code}", response.status_code)
        return self._chunks(response)

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_content(self.chunk_size)
        except requests.Timeout as e:
            raise exceptions.SlowRetrievalError("the server stopped sending") from e
        except requests.RequestException as e:
            raise exceptions.DownloadError(_reason(e)) from e
        finally:
            response.close()

    def close(self) -> None:
        self.session.close()


def _reason(e: BaseException) -> str:
    """The innermost cause of a connection error, shortly (e.g. "Connection refused")."""
    inner: BaseException = e
    for _ in range(16):
        nested = inner.__cause__ or inner.__context__
        if nested is None:
            break
        inner = nested
    text = str(inner).strip() or type(inner).__name__
    match = re.search(r"\[Errno -?\d+\] ([^'\"\]\)]+)", str(e))
    return match.group(1).strip() if match else text[:120]


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetInfo:
    """A target as the signed metadata describes it: path, length, hashes, custom."""

    path: str
    length: int
    hashes: Mapping[str, str] = field(hash=False)
    custom: Any = field(default=None, hash=False, compare=False)

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    def to_tuf(self) -> TargetFile:
        return TargetFile(self.length, dict(self.hashes), self.path)

    @classmethod
    def of(cls, tf: TargetFile) -> TargetInfo:
        return cls(tf.path, tf.length, dict(tf.hashes), tf.custom)


@dataclass(frozen=True)
class Release:
    """One plugin release for one platform, from the signed index metadata alone."""

    name: str
    version: str
    platform: str
    types: tuple[str, ...]
    host_modules: tuple[str, ...]
    plugin_requires: tuple[tuple[str, str], ...]
    description: str
    publisher: str
    publisher_key_id: str
    artifact: TargetInfo
    manifest: TargetInfo

    @property
    def requires(self) -> dict[str, Any]:
        """``requires`` in the manifest's JSON form."""
        return {"host": list(self.host_modules), "plugins": dict(self.plugin_requires)}


@dataclass(frozen=True)
class IndexState:
    """The versions a refresh ended with."""

    registry: str
    root_version: int
    timestamp_version: int
    snapshot_version: int
    targets_version: int
    timestamp_expires: datetime


# -- custom fields -----------------------------------------------------------------------------


def _target_info(doc: Any, *, where: str) -> TargetInfo:
    strict_json.expect(doc, dict, where=where, what="the target")
    path = strict_json.require(doc, "path", str, where=where)
    length = strict_json.require(doc, "length", int, where=where)
    hashes = strict_json.require(doc, "hashes", dict, where=where)
    if length < 0:
        raise StrictJSONError(f'{where}: field "length" is negative')
    if not hashes:
        raise StrictJSONError(f'{where}: field "hashes" is empty')
    for algo, value in hashes.items():
        strict_json.expect(value, str, where=where, what=f'hash "{algo}"')
        if not _HASH_NAME.fullmatch(algo) or not _HEX.fullmatch(value):
            raise StrictJSONError(f"{where}: hash {show(algo)} is not a lowercase hex digest")
    return TargetInfo(path, length, dict(hashes), doc.get("custom"))


def _release(artifact: TargetInfo, manifest: TargetInfo | None, *, where: str) -> Release:
    """A :class:`Release` from an artifact target's custom fields, checked exactly."""
    custom = artifact.custom
    strict_json.expect(custom, dict, where=where, what='the "custom" field')
    name = strict_json.require(custom, "name", str, where=where)
    check_name(name, where=where, what='field "name"')
    version = strict_json.require(custom, "version", str, where=where)
    check_version(version, where=where)
    platform = strict_json.require(custom, "platform", str, where=where)
    if not _PLATFORM.fullmatch(platform):
        raise StrictJSONError(f'{where}: field "platform" is {show(platform)}')
    types = check_types(
        strict_json.require(custom, "types", list, where=where), where=where, non_empty=True
    )
    requires = strict_json.require(custom, "requires", dict, where=where)
    hosts = strict_json.optional(requires, "host", list, [], where=f"{where}: requires")
    host_modules = tuple(
        check_name(h, where=where, what=f'item {i} of field "requires.host"')
        for i, h in enumerate(hosts, 1)
    )
    wanted = strict_json.optional(requires, "plugins", dict, {}, where=f"{where}: requires")
    plugin_requires: list[tuple[str, str]] = []
    for dep, spec in wanted.items():
        check_name(dep, where=where, what='a key of field "requires.plugins"')
        strict_json.expect(spec, str, where=where, what=f'field "requires.plugins.{dep}"')
        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            raise StrictJSONError(
                f'{where}: field "requires.plugins.{dep}" is {show(spec)}, which is not a'
                " version specifier"
            ) from None
        plugin_requires.append((dep, spec))
    description = strict_json.require(custom, "description", str, where=where)
    if len(description) > _MAX_DESCRIPTION:
        raise StrictJSONError(f'{where}: field "description" is too long')
    publisher = strict_json.require(custom, "publisher", str, where=where)
    for field_name, text, allowed in (
        ("description", description, "\n\t"),
        ("publisher", publisher, ""),
    ):
        if any(not ch.isprintable() and ch not in allowed for ch in text):
            raise StrictJSONError(f'{where}: field "{field_name}" contains a control character')
    key_id = strict_json.require(custom, "publisher_key_id", str, where=where)
    if not is_key_id(key_id):
        raise StrictJSONError(f'{where}: field "publisher_key_id" is not a key id')
    manifest_path = strict_json.require(custom, "manifest", str, where=where)
    filename = artifact.filename
    expected = f"{name}/{version}/{platform}/"
    if not (
        _FILENAME.fullmatch(filename)
        and artifact.path == expected + filename
        and manifest_path == expected + paths.MANIFEST_FILENAME
    ):
        raise StrictJSONError(
            f"{where}: the target paths do not match the name, version and platform"
        )
    if manifest is None or manifest.path != manifest_path:
        raise StrictJSONError(f"{where}: the manifest target {manifest_path} is not signed")
    return Release(
        name=name,
        version=version,
        platform=platform,
        types=types,
        host_modules=host_modules,
        plugin_requires=tuple(sorted(plugin_requires)),
        description=description,
        publisher=publisher,
        publisher_key_id=key_id,
        artifact=artifact,
        manifest=manifest,
    )


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


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()).rstrip(".")
    return text or type(e).__name__


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
        where = f"registry {self.name}: {doing}"
        try:
            yield
        except RegistryError:
            raise
        except exceptions.ExpiredMetadataError as e:
            raise RegistryError(self._expired(e)) from e
        except exceptions.BadVersionNumberError as e:
            raise RegistryError(
                f"{where}: the server sent metadata older than, or not matching, what this"
                f" client already trusts ({_one_line(e)}); refusing it as a rollback or"
                " mix-and-match attack"
            ) from e
        except exceptions.UnsignedMetadataError as e:
            raise RegistryError(
                f"{where}: metadata is not signed by enough trusted keys ({_one_line(e)});"
                " refusing it"
            ) from e
        except exceptions.LengthOrHashMismatchError as e:
            raise RegistryError(
                f"{where}: the downloaded bytes do not match their signed length and hash"
                f" ({_one_line(e)}); refusing them"
            ) from e
        except exceptions.DownloadLengthMismatchError as e:
            url = getattr(self.fetcher, "last_url", "") or self.url
            raise RegistryError(
                f"{where}: the server sent more bytes than the signed metadata allows for"
                f" {url}; refusing them"
            ) from e
        except exceptions.DownloadHTTPError as e:
            url = getattr(self.fetcher, "last_url", "") or self.url
            raise RegistryError(
                f"{where}: the server answered HTTP {e.status_code} for {url}"
            ) from e
        except exceptions.SlowRetrievalError as e:
            raise RegistryError(f"{where}: the server is too slow ({_one_line(e)})") from e
        except exceptions.DownloadError as e:
            url = getattr(self.fetcher, "last_url", "") or self.url
            cause = e.__cause__ or e
            raise RegistryError(f"{where}: cannot download {url} ({_one_line(cause)})") from e
        except _MalformedMetadataError as e:
            raise RegistryError(f"{where}: refused malformed metadata ({e})") from e
        except exceptions.RepositoryError as e:
            raise RegistryError(
                f"{where}: the metadata is invalid ({_one_line(e)}); refusing it"
            ) from e
        except OSError as e:
            raise RegistryError(
                f"{where}: cannot use the cache or destination {e.filename or ''}"
                f" ({e.strerror or e})"
            ) from e

    def _expired(self, e: exceptions.ExpiredMetadataError) -> str:
        match = re.search(r"(?:New |Final )?([A-Za-z0-9._-]+?)(?:\.json)? is expired", str(e))
        role = match.group(1) if match else "some"
        expires: datetime | None = None
        if self._updater is not None:
            trusted = self._updater._trusted_set
            if role in ("root", "timestamp", "snapshot") and role in trusted._trusted_set:
                expires = trusted[role].expires
        when = f" on {expires:%Y-%m-%d %H:%M} UTC" if expires else ""
        return (
            f"registry {self.name}: {role} metadata expired{when}; the registry must re-sign"
            " it (or this computer's clock is wrong)"
        )

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
        if tf is None:
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
    ) -> Path:
        """Download a target into ``dest_dir`` (as its base name, or ``filename``) once
        its length and hashes match the signed metadata; nothing is left on failure.
        ``on_bytes`` hears the size of every chunk received (a progress bar)."""
        updater = self._ready()
        info = self.target(target) if isinstance(target, str) else target
        name = filename or info.filename
        if not _FILENAME.fullmatch(name) or name in (".", ".."):
            raise RegistryError(f"registry {self.name}: {show(name)} is not a plain file name")
        dest_dir = Path(dest_dir)
        with self._refusing(f"downloading {info.path}"):
            dest_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
            os.close(fd)
            try:
                counting = self.fetcher if isinstance(self.fetcher, _CountingFetcher) else None
                if counting is not None:
                    counting.on_chunk = on_bytes
                try:
                    updater.download_target(info.to_tuf(), filepath=tmp)
                finally:
                    if counting is not None:
                        counting.on_chunk = None
                os.replace(tmp, dest_dir / name)
            finally:
                Path(tmp).unlink(missing_ok=True)
        return dest_dir / name
