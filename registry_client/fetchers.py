"""The fetchers a :class:`~registry_client.tuf_client.RegistryClient` downloads through.

Why this is its own module: how bytes travel (HTTP(S) with a ``requests.Session``, or a
local copy of the index through ``file://``) is independent of what TUF verifies. Both
fetchers count requests and bytes (for progress bars and benchmarks) and read every
metadata file with :mod:`keys.strict_json` before TUF parses it; a refusal there is a
:class:`_MalformedMetadataError`, which the client turns into one sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import IO
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
from requests.adapters import HTTPAdapter
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface
from urllib3.util.retry import Retry

from keys import strict_json
from keys.errors import StrictJSONError

__all__ = ["FileFetcher", "RequestsFetcher"]


class _MalformedMetadataError(exceptions.RepositoryError):
    """Metadata bytes that are not strict JSON (see :mod:`keys.strict_json`)."""


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
