"""One sentence for every way TUF, a download or the cache can fail.

Why this is its own module: :class:`~registry_client.tuf_client.RegistryClient` promises
that every failure becomes a :class:`~registry_client.tuf_client.RegistryError` whose
message names the registry and what was wrong. Choosing that sentence for each of
python-tuf's exceptions (rollback, signatures, hashes, HTTP, timeouts, malformed metadata,
expiry, the cache) is a table of its own; the client's ``_refusing`` raises it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from tuf.api import exceptions
from tuf.ngclient.updater import Updater

from registry_client.fetchers import _MalformedMetadataError


def refusal(
    e: exceptions.RepositoryError | exceptions.DownloadError | OSError,
    *,
    registry: str,
    where: str,
    last_url: Callable[[], str],
    updater: Updater | None,
) -> str:
    """The sentence for ``e``, raised while ``where`` ("registry NAME: doing"); ``last_url``
    is the URL being fetched (or the registry's), ``updater`` the one that refreshed."""
    if isinstance(e, exceptions.ExpiredMetadataError):
        return _expired(e, registry, updater)
    if isinstance(e, exceptions.BadVersionNumberError):
        return (
            f"{where}: the server sent metadata older than, or not matching, what this"
            f" client already trusts ({_one_line(e)}); refusing it as a rollback or"
            " mix-and-match attack"
        )
    if isinstance(e, exceptions.UnsignedMetadataError):
        return (
            f"{where}: metadata is not signed by enough trusted keys ({_one_line(e)}); refusing it"
        )
    if isinstance(e, exceptions.LengthOrHashMismatchError):
        return (
            f"{where}: the downloaded bytes do not match their signed length and hash"
            f" ({_one_line(e)}); refusing them"
        )
    if isinstance(e, exceptions.DownloadLengthMismatchError):
        return (
            f"{where}: the server sent more bytes than the signed metadata allows for"
            f" {last_url()}; refusing them"
        )
    if isinstance(e, exceptions.DownloadHTTPError):
        return f"{where}: the server answered HTTP {e.status_code} for {last_url()}"
    if isinstance(e, exceptions.SlowRetrievalError):
        return f"{where}: the server is too slow ({_one_line(e)})"
    if isinstance(e, exceptions.DownloadError):
        cause = e.__cause__ or e
        return f"{where}: cannot download {last_url()} ({_one_line(cause)})"
    if isinstance(e, _MalformedMetadataError):
        return f"{where}: refused malformed metadata ({e})"
    if isinstance(e, exceptions.RepositoryError):
        return f"{where}: the metadata is invalid ({_one_line(e)}); refusing it"
    return f"{where}: cannot use the cache or destination {e.filename or ''} ({e.strerror or e})"


def _expired(e: exceptions.ExpiredMetadataError, registry: str, updater: Updater | None) -> str:
    match = re.search(r"(?:New |Final )?([A-Za-z0-9._-]+?)(?:\.json)? is expired", str(e))
    role = match.group(1) if match else "some"
    expires: datetime | None = None
    if updater is not None:
        trusted = updater._trusted_set
        if role in ("root", "timestamp", "snapshot") and role in trusted._trusted_set:
            expires = trusted[role].expires
    when = f" on {expires:%Y-%m-%d %H:%M} UTC" if expires else ""
    return (
        f"registry {registry}: {role} metadata expired{when}; the registry must re-sign"
        " it (or this computer's clock is wrong)"
    )


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()).rstrip(".")
    return text or type(e).__name__
