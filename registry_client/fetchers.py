"""The fetchers a :class:`~registry_client.tuf_client.RegistryClient` downloads through.

Why this is its own module: how bytes travel (HTTP(S) with a ``requests.Session``, or a
local copy of the index through ``file://``) is independent of what TUF verifies. Both
fetchers count requests and bytes (for progress bars and benchmarks) and read every
metadata file with :mod:`keys.strict_json` before TUF parses it; a refusal there is a
:class:`_MalformedMetadataError`, which the client turns into one sentence.

Every download is bounded here, in the one chunk loop both transports share
(:meth:`_CountingFetcher.stream`), metadata and targets alike:

- **a deadline per file**, not per read: ``deadline_floor`` seconds plus one second per
  ``min_rate`` bytes the file may have (defaults: 60 s + length / 64 KiB/s, so a 16 KiB
  timestamp gets 60.25 s and a 512 MiB artifact about 2 h 20 min). A server that trickles
  one byte every few seconds is refused with :class:`SlowRetrievalError` once it is over.
  The per-read timeout still bounds silence, so a silent server is refused after
  ``min(read_timeout, deadline)``. Not bounded: a server trickling its *headers* (each
  read is within the read timeout; ``requests`` offers no hook before the response);
- **never more bytes than the limit** (the signed length of a target, TUF's maximum for
  a metadata file): :class:`DownloadLengthMismatchError` before the extra chunk is used;
- **ranges**, for resuming a target (:mod:`registry_client.downloads`): ``stream(url,
  limit=L, start=N)`` asks for ``bytes=N-`` and accepts a 206 only with the Content-Range
  ``bytes N-(L-1)/L``; a 200 means the server sent the whole file again.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface
from urllib3.util.retry import Retry

from keys import strict_json
from keys.errors import StrictJSONError

__all__ = ["DEADLINE_FLOOR", "MIN_RATE", "FileFetcher", "RangeError", "RequestsFetcher", "stream"]

#: Seconds every download may take whatever its size (connecting, TLS, a slow start).
DEADLINE_FLOOR = 60.0
#: The slowest rate (bytes per second) at which a download still finishes in time.
MIN_RATE = 64 << 10

Chunks = tuple[int, Iterator[bytes]]  # (the byte the chunks start at, the chunks)


class _MalformedMetadataError(exceptions.RepositoryError):
    """Metadata bytes that are not strict JSON (see :mod:`keys.strict_json`)."""


class RangeError(exceptions.DownloadError):
    """The server answered a range request with another range: a partial file it was
    meant to continue cannot be trusted to line up, so the caller starts over."""


class _CountingFetcher(FetcherInterface):
    """Counts requests and bytes, bounds each download (deadline and length), and reads
    metadata strictly before TUF parses it. Transports implement :meth:`_open`."""

    def __init__(
        self,
        *,
        deadline_floor: float = DEADLINE_FLOOR,
        min_rate: float = MIN_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (deadline_floor > 0 and min_rate > 0):
            raise ValueError("deadline_floor and min_rate must be positive")
        self.urls: list[str] = []
        self.bytes_received = 0
        self.deadline_floor = deadline_floor
        self.min_rate = min_rate
        self.clock = clock

    @property
    def last_url(self) -> str:
        return self.urls[-1] if self.urls else ""

    def deadline(self, limit: int | None) -> float:
        """Seconds one download of at most ``limit`` bytes may take (unknown: the floor)."""
        return self.deadline_floor + (limit or 0) / self.min_rate

    def _open(self, url: str, *, start: int, limit: int | None, seconds: float) -> Chunks:
        """The transport: the body of ``url`` from byte ``start`` if it can (else 0)."""
        raise NotImplementedError

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self._open(url, start=0, limit=None, seconds=self.deadline(None))[1]

    def fetch(self, url: str) -> Iterator[bytes]:
        return self.stream(url, limit=None)[1]

    def stream(self, url: str, *, limit: int | None, start: int = 0) -> Chunks:
        """The body of ``url`` (from byte ``start``, if the server honours the range: the
        first item says where the chunks begin), at most ``limit`` bytes in all, within
        the deadline for ``limit`` bytes."""
        if start and (limit is None or not 0 < start < limit):
            raise ValueError("a range needs a start inside the known length")
        self.urls.append(url)
        seconds = self.deadline(limit)
        end = self.clock() + seconds
        try:
            offset, chunks = self._open(url, start=start, limit=limit, seconds=seconds)
        except exceptions.DownloadError:
            raise
        except Exception as e:  # as FetcherInterface.fetch: only DownloadErrors leave
            raise exceptions.DownloadError(f"Failed to download {url}") from e
        allowed = None if limit is None else limit - offset
        return offset, self._bounded(url, chunks, allowed, end, seconds)

    def _bounded(
        self, url: str, chunks: Iterator[bytes], allowed: int | None, end: float, seconds: float
    ) -> Iterator[bytes]:
        """The chunk loop every download runs: the length bound and the deadline."""
        received = 0
        try:
            for chunk in chunks:
                received += len(chunk)
                if allowed is not None and received > allowed:
                    raise exceptions.DownloadLengthMismatchError(
                        f"{url} sent more than the {allowed} bytes expected"
                    )
                if self.clock() > end:
                    raise exceptions.SlowRetrievalError(
                        f"{url} did not arrive within its deadline of {seconds:.1f} s"
                    )
                self.bytes_received += len(chunk)
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    @contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        """TUF's download (metadata): into an anonymous temporary file, bounded."""
        with tempfile.TemporaryFile() as f:
            for chunk in self.stream(url, limit=max_length)[1]:
                f.write(chunk)
            f.seek(0)
            yield f

    def download_bytes(self, url: str, max_length: int) -> bytes:
        # ngclient downloads only metadata (targets go through registry_client.downloads).
        data = super().download_bytes(url, max_length)
        try:
            strict_json.loads(data, source=url.rsplit("/", 1)[-1], max_bytes=max(max_length, 1))
        except StrictJSONError as e:
            raise _MalformedMetadataError(e.message) from e
        return data


class _Wrapped(_CountingFetcher):
    """Any other :class:`FetcherInterface` (a test's simulator, a cache), bounded the same
    way; it cannot resume (no ranges)."""

    def __init__(self, inner: FetcherInterface) -> None:
        super().__init__()
        self.inner = inner

    def _open(self, url: str, *, start: int, limit: int | None, seconds: float) -> Chunks:
        return 0, self.inner.fetch(url)


def stream(fetcher: FetcherInterface, url: str, *, limit: int, start: int = 0) -> Chunks:
    """:meth:`_CountingFetcher.stream` through any fetcher (others: no range, defaults)."""
    ours = fetcher if isinstance(fetcher, _CountingFetcher) else _Wrapped(fetcher)
    return ours.stream(url, limit=limit, start=start if ours is fetcher else 0)


class FileFetcher(_CountingFetcher):
    """Reads ``file://`` URLs: a local copy of an index, verified exactly like HTTP."""

    def __init__(
        self,
        chunk_size: int = 1 << 20,
        *,
        deadline_floor: float = DEADLINE_FLOOR,
        min_rate: float = MIN_RATE,
    ) -> None:
        super().__init__(deadline_floor=deadline_floor, min_rate=min_rate)
        self.chunk_size = chunk_size

    def _open(self, url: str, *, start: int, limit: int | None, seconds: float) -> Chunks:
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
        f.seek(start)
        return start, self._chunks(f)

    def _chunks(self, f: IO[bytes]) -> Iterator[bytes]:
        with f:
            while chunk := f.read(self.chunk_size):
                yield chunk


class RequestsFetcher(_CountingFetcher):
    """HTTP(S) with a ``requests.Session``: connect and read timeouts, ``retries`` on
    connection errors and on 502/503/504 (exponential ``backoff`` in seconds), proxies
    from the environment (``trust_env``); ``deadline_floor`` and ``min_rate`` set the
    deadline of each download (see the module docstring)."""

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
        deadline_floor: float = DEADLINE_FLOOR,
        min_rate: float = MIN_RATE,
    ) -> None:
        super().__init__(deadline_floor=deadline_floor, min_rate=min_rate)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
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

    def _open(self, url: str, *, start: int, limit: int | None, seconds: float) -> Chunks:
        # A range continues the bytes on disk, so it must not be re-encoded (gzip).
        headers = {"Range": f"bytes={start}-", "Accept-Encoding": "identity"} if start else None
        timeout = (self.connect_timeout, min(self.read_timeout, seconds))
        try:
            response = self.session.get(url, stream=True, timeout=timeout, headers=headers)
        except requests.Timeout as e:
            raise exceptions.SlowRetrievalError(f"{url} timed out") from e
        except requests.RequestException as e:
            raise exceptions.DownloadError(_reason(e)) from e
        status = response.status_code
        if start and status == 206 and limit is not None:
            _check_range(response, start, limit)
            return start, self._chunks(response)
        if status != 200:
            response.close()
            if start and status in (206, 416):
                raise RangeError(f"the server answered HTTP {status} to the range bytes={start}-")
            raise exceptions.DownloadHTTPError(f"HTTP {status}", status)
        return 0, self._chunks(response)

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        # read1: whatever one read brings (a trickle reaches the deadline check), where
        # iter_content would wait for a whole chunk_size.
        try:
            while chunk := response.raw.read1(self.chunk_size, decode_content=True):
                yield chunk
        except urllib3.exceptions.TimeoutError as e:
            raise exceptions.SlowRetrievalError("the server stopped sending") from e
        except urllib3.exceptions.ProtocolError:  # the message is ours: not the cause's repr
            raise exceptions.DownloadError("the connection broke mid-way") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise exceptions.DownloadError(_reason(e)) from e
        finally:
            response.close()

    def close(self) -> None:
        self.session.close()


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)")


def _check_range(response: requests.Response, start: int, limit: int) -> None:
    """A 206 must continue exactly where the partial file ends, up to the signed length."""
    header = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None or tuple(map(int, match.groups())) != (start, limit - 1, limit):
        response.close()
        raise RangeError(
            f"the server answered the range {header.strip()[:80] or '(none)'!r}, not"
            f" bytes {start}-{limit - 1}/{limit}"
        )


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
