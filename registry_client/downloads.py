"""Bounded, resumable downloads of signed targets, in a work area that is always cleaned.

Why targets do not go through python-tuf's ``Updater.download_target``: it streams into an
anonymous temporary file in the system's temp folder, checks it, then copies it to the
destination. It sends no Range (no resume), writes every byte twice, and nothing of an
interrupted download can outlive the call. What it checks against we already hold: the
target's signed length and hashes (:class:`TargetInfo`, from metadata TUF verified). So
this module streams with our fetcher straight into a part file, hashes every byte with
:mod:`hashlib` (a resumed part is hashed from its first byte, so the check covers the
whole file), and compares the length and every signed hash before the file gets its
name: the check ``TargetFile.verify_length_and_hashes`` makes. Metadata keeps going
through TUF (``Updater.refresh``), bounded by the same fetcher
(:mod:`registry_client.fetchers`: a deadline per file, never more bytes than the limit).

Before any byte is requested, a target's declared length is capped (:data:`ARTIFACT_CAP`,
:data:`MANIFEST_CAP`): the loader's own limits (``loader.boot.MAX_ARTIFACT_BYTES``, 512
MiB; ``MAX_MANIFEST_BYTES``, 1 MiB), since the loader would refuse anything larger anyway.

The work area, under the state root (:class:`WorkArea`):

- ``.download-XXXXXXXX/``: one run's folder (the packages it downloads), locked by that
  run (``.lock``, flock) and removed in ``finally``;
- ``.download-partial/<sha256>.part``: a target whose download failed on the network
  mid-way (dropped, too slow, an HTTP error), kept so the next attempt asks for the rest
  (``Range: bytes=N-``). It is named after the signed sha256, so only the same target
  resumes it. It is removed on success, on a hash mismatch, on a refused range or
  excess bytes, and on any other exit (Ctrl-C: the user wants nothing left behind).

A run killed with ``kill -9`` runs no ``finally``: :func:`sweep` (when the next install
opens its work area, under the state root's lock) removes every run folder whose lock
nobody holds, and every partial older than :data:`MAX_AGE` that nobody is writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from loader.boot import MAX_ARTIFACT_BYTES, MAX_MANIFEST_BYTES
from loader.fields import show
from loader.home import Home
from loader.journal import state_lock
from registry_client.fetchers import RangeError, stream
from registry_client.releases import TargetInfo

__all__ = [
    "ARTIFACT_CAP",
    "MANIFEST_CAP",
    "MAX_AGE",
    "Cap",
    "Partials",
    "WorkArea",
    "fetch_target",
    "sweep",
    "target_url",
    "too_large",
]

#: A partial download older than this (seconds since its last byte) is swept.
MAX_AGE = 3600.0
WORK_PREFIX = ".download-"
PARTIALS = ".download-partial"
LOCK = ".lock"
#: At least one of these must be signed for a target; every signed hash is checked.
_STRONG = ("sha256", "sha512")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Cap:
    """The most bytes a target may declare before we download it, and what it is."""

    limit: int
    what: str


ARTIFACT_CAP = Cap(MAX_ARTIFACT_BYTES, "a plugin artifact")
MANIFEST_CAP = Cap(MAX_MANIFEST_BYTES, "a plugin manifest")


def too_large(info: TargetInfo, cap: Cap) -> str | None:
    """Why ``info`` is refused before download (its declared length is over ``cap``)."""
    if info.length <= cap.limit:
        return None
    return (
        f"{info.path} declares {_size(info.length)}, more than the {_size(cap.limit)}"
        f" {cap.what} may have"
    )


def target_url(updater: Updater, base: str, info: TargetInfo) -> str:
    """The URL ``Updater.download_target`` would fetch: ``<dir>/<first hash>.<name>``
    under consistent snapshots (how :mod:`index` publishes), ``base`` ends in "/"."""
    path = info.path
    if updater._trusted_set.root.consistent_snapshot and updater.config.prefix_targets_with_hash:
        first = next(iter(info.hashes.values()), "")
        dirname, sep, basename = path.rpartition("/")
        path = f"{dirname}{sep}{first}.{basename}"
    return base + path


# -- one download --------------------------------------------------------------------------


@dataclass
class _Part:
    path: Path
    resumable: bool


def fetch_target(
    fetcher: FetcherInterface,
    url: str,
    info: TargetInfo,
    dest: Path,
    *,
    partials: Partials | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Download ``info`` from ``url`` to ``dest`` once its length and every signed hash
    match. With ``partials`` (on the same file system as ``dest``) the part file is
    resumable (see the module docstring); without, it is a private ``.NAME.*.part``
    beside ``dest``, removed on any failure.
    ``on_bytes`` hears each chunk's size (a resumed part's size first).

    Raises:
        exceptions.RepositoryError: no usable signed hash, or the bytes do not match.
        exceptions.DownloadError: the download failed (deadline, length, HTTP, network).
    """
    _hashers(info)  # an unusable hash is refused before any request
    with _part(info, dest, partials) as part:
        hashers = _fill(fetcher, url, info, part, on_bytes)
        for algorithm, hasher in hashers.items():
            got, signed = hasher.hexdigest(), info.hashes[algorithm]
            if got != signed:
                raise exceptions.LengthOrHashMismatchError(
                    f"its {algorithm} begins {got[:16]}, the signed one {signed[:16]}"
                )
        os.replace(part.path, dest)


@contextlib.contextmanager
def _part(info: TargetInfo, dest: Path, partials: Partials | None) -> Iterator[_Part]:
    """The file to download into; removed on exit unless a network failure left a
    resumable part worth continuing."""
    sha256 = info.sha256
    claim: contextlib.AbstractContextManager[Path | None] = contextlib.nullcontext(None)
    if partials is not None and sha256 is not None and _SHA256.fullmatch(sha256):
        claim = partials.claim(sha256)
    with claim as claimed:
        if claimed is None:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            os.close(fd)
            part = _Part(Path(tmp), resumable=False)
        else:
            part = _Part(claimed, resumable=True)
        keep = False
        try:
            yield part
        except exceptions.DownloadError as e:
            bad = isinstance(e, exceptions.DownloadLengthMismatchError | RangeError)
            keep = part.resumable and not bad
            raise
        finally:
            if not keep:
                part.path.unlink(missing_ok=True)


def _fill(
    fetcher: FetcherInterface,
    url: str,
    info: TargetInfo,
    part: _Part,
    on_bytes: Callable[[int], None] | None,
) -> dict[str, hashlib._Hash]:
    """Stream ``url`` into the part (continuing a resumable one); the hashes of it all."""
    hashers = _hashers(info)
    size = part.path.stat().st_size if part.resumable else 0
    start = size if 0 < size < info.length else 0
    with open(part.path, "r+b") as f:
        if start:
            _hash_prefix(f, start, hashers)
        offset, chunks = stream(fetcher, url, limit=info.length, start=start)
        try:
            if offset != start:  # the server sent the whole file again: start over
                hashers = _hashers(info)
            f.seek(offset)
            f.truncate()
            received = offset
            if on_bytes is not None and offset:
                on_bytes(offset)
            for chunk in chunks:
                f.write(chunk)
                for hasher in hashers.values():
                    hasher.update(chunk)
                received += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    if received < info.length:
        raise exceptions.DownloadError(
            f"the server sent {received} of its {info.length} signed bytes"
        )
    return hashers


def _hashers(info: TargetInfo) -> dict[str, hashlib._Hash]:
    """A fresh hash object per signed algorithm; refuses a target without a strong one."""
    if not any(a in info.hashes for a in _STRONG):
        raise exceptions.LengthOrHashMismatchError(
            f"{info.path} has no signed {' or '.join(_STRONG)} hash to check it against"
        )
    out = {}
    for algorithm in info.hashes:
        try:
            out[algorithm] = hashlib.new(algorithm)
        except (ValueError, TypeError):
            raise exceptions.LengthOrHashMismatchError(
                f"{info.path} is signed with the hash {show(algorithm)}, which this client"
                " does not know"
            ) from None
    return out


def _hash_prefix(f: IO[bytes], length: int, hashers: dict[str, hashlib._Hash]) -> None:
    """Hash the first ``length`` bytes already in the part file."""
    left = length
    while left > 0:
        block = f.read(min(left, 1 << 20))
        if not block:
            break
        for hasher in hashers.values():
            hasher.update(block)
        left -= len(block)


# -- the work area -------------------------------------------------------------------------


class Partials:
    """The resumable part files of interrupted downloads (``.download-partial/``)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.dir = home.root / PARTIALS

    @contextlib.contextmanager
    def claim(self, sha256: str) -> Iterator[Path | None]:
        """The part file for ``sha256``, locked for this run; None when another run is
        writing it. On exit an empty part is removed, and the folder once it is empty."""
        path = self.dir / f"{sha256}.part"
        with state_lock(self.home):  # no sweep between creating and locking it
            self.dir.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            if not _try_lock(fd):
                os.close(fd)
                fd = -1
        if fd < 0:
            yield None
            return
        try:
            yield path
        finally:
            try:
                with state_lock(self.home):
                    if path.exists() and path.stat().st_size == 0:
                        path.unlink()
                    with contextlib.suppress(OSError):
                        self.dir.rmdir()  # only when empty
            finally:
                os.close(fd)


class WorkArea:
    """One run's download folder (``path``, locked while it lives) and the shared
    :class:`Partials`; opening it first sweeps what killed runs left."""

    def __init__(self, home: Home, *, max_age: float = MAX_AGE) -> None:
        with state_lock(home):
            sweep(home.root, max_age=max_age)
            self.path = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=home.root))
            self._fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # new: nobody else can hold it
        self.partials = Partials(home)

    def close(self) -> None:
        """Remove this run's folder; safe to call twice."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> WorkArea:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def sweep(root: Path, *, max_age: float = MAX_AGE, now: float | None = None) -> list[Path]:
    """Remove what runs killed before their ``finally`` left in ``root``: each
    ``.download-*`` run folder whose lock nobody holds, each partial older than
    ``max_age`` seconds that nobody is writing. Call under the state root's lock.
    Returns what it removed."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    for entry in sorted(root.glob(WORK_PREFIX + "*")):
        if entry.is_symlink() or not entry.is_dir():
            continue
        if entry.name == PARTIALS:
            for part in sorted(entry.glob("*.part")):
                try:
                    old = now - part.lstat().st_mtime > max_age
                except OSError:
                    continue  # gone meanwhile: its run removed it
                if old and not _held(part):
                    part.unlink(missing_ok=True)
                    removed.append(part)
            with contextlib.suppress(OSError):
                entry.rmdir()
        elif not _held(entry / LOCK):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _held(path: Path) -> bool:
    """Whether a live process holds the flock on ``path`` (no file: nobody does)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return not _try_lock(fd)  # closing the descriptor releases a lock taken here
    finally:
        os.close(fd)


def _size(n: int) -> str:
    """15 B, 6.5 KiB, 512 MiB, 1.5 GiB."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{n} B" if unit == "B" else f"{value:.3g} {unit}"
