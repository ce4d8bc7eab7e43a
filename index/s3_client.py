"""The S3 client a push talks through, and how its failures become one sentence.

Why this exists apart from :mod:`index.push`: making the client (the standard AWS settings,
path-style addressing for other providers, Content-MD5 rather than botocore's streamed
checksums, which many S3 lookalikes refuse) and turning botocore's and the connection's
errors into a printable sentence are the same for every call a push makes. boto3 is the
``s3`` extra: it is imported only here, when a push runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from index.errors import IndexRepoError
from loader.fields import show

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["make_client", "said", "talking"]

_ENDPOINT = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[\w.~/-]*)?")


def make_client(endpoint_url: str | None = None) -> S3Client:
    """An S3 client from the standard AWS settings (credentials, ``AWS_ENDPOINT_URL``, region;
    us-east-1 if none); path-style addressing when the endpoint is not Amazon's."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise IndexRepoError(
            "pushing to S3 needs boto3, which is not installed: pip install 'pm-plugins[s3]'"
        ) from None

    if endpoint_url is not None and not _ENDPOINT.fullmatch(endpoint_url):
        raise IndexRepoError(f"--endpoint-url {show(endpoint_url)} is not like http://HOST:PORT")
    env = os.environ
    custom = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    session = boto3.session.Session()
    config = Config(
        region_name=session.region_name or "us-east-1",
        s3={"addressing_style": "path" if custom else "auto"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        # Content-MD5, not botocore's streamed checksums, which many S3 lookalikes refuse
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def said(exc: BaseException) -> str:
    """What the server (or the connection) said, as part of a sentence, made printable."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response.get("Error", {})
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        code = "" if code == str(status) else f" {code}"
        text = f"the server answered {status}{code}: {message}".rstrip(": .")
    elif type(exc).__name__ == "NoCredentialsError":
        text = "no S3 credentials were found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    else:
        text = str(exc) or type(exc).__name__
    text = "".join(c if c.isprintable() else "?" for c in " ".join(text.split())).rstrip(".")
    return text if len(text) <= 200 else text[:197] + "..."


@contextmanager
def talking(doing: str) -> Iterator[None]:
    """Any failure inside is one sentence: what we were doing and what was said."""
    try:
        yield
    except IndexRepoError:
        raise
    except Exception as e:  # botocore's errors, connection errors, OSError
        raise IndexRepoError(f"{doing} failed: {said(e)}") from e
