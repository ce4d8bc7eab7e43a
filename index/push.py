"""Pushing a published index to S3-compatible object storage, so no reader sees it half done.

Why it exists: a registry is often served from an object store (S3, R2, MinIO, versitygw,
...) behind a CDN, where there is no atomic rename: each object appears on its own. So
:func:`push` uploads ``published/`` in this order, each step after the one before is done
(``jobs`` uploads at once within a step): targets (content-addressed), versioned metadata
(``N.root.json``, ``N.targets.json``, ``N.<role>.json``), ``N.snapshot.json``, ``root.json``
and ``timestamp.json`` last; readers see the previous index until that last object lands.
A failed upload stops there, with a refusal naming the object and what the server said.
Objects the bucket holds with the same bytes (size and MD5 ETag, or the ``sha256`` we store
in their metadata) are skipped; a differing target is uploaded again (its name says what it
must hold); a differing *versioned metadata file*, or a bucket ``timestamp.json`` not older
than ours, is a refusal (another index was pushed there, or readers would be rolled back).
Nothing is deleted: old versions stay for readers in the middle of a refresh.

Cache-Control: versioned files and targets ``public, max-age=31536000, immutable``;
``timestamp.json`` and ``root.json`` ``no-cache`` (with a max-age two CDN edges could serve
timestamps of different ages, and TUF refuses one older than one it saw). A key with ``+``
is also uploaded with a space for it (Amazon S3 reads ``+`` in a URL path as a space).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

from index.errors import IndexRepoError
from index.s3_client import make_client, talking
from loader.fields import show

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["IMMUTABLE", "PHASES", "REVALIDATE", "PushResult", "S3Location", "make_client", "push"]

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
PHASES = ("targets", "metadata", "snapshot", "root", "timestamp")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._~-]+")  # unreserved in a URL: the client's base
_KEY_PART = re.compile(r"[A-Za-z0-9._!+-]+")  # what index.paths lets into a target path
_VERSIONED = re.compile(r"[1-9][0-9]{0,9}\.([A-Za-z0-9._-]+)\.json")
_MD5 = re.compile(r"[0-9a-f]{32}")
_TYPES = {"targets": "application/octet-stream"}
_MAX_PAGES = 10_000  # of a listing (1,000 keys each); past it, objects count as absent


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix``; ``prefix`` is "" or like ``a/b`` (no slash at either end)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Read ``s3://BUCKET[/PREFIX]``, or refuse in one sentence saying why."""
        parts = urlsplit(url)
        path = parts.path.removeprefix("/").removesuffix("/")
        bad_part = any(p in (".", "..") or not _PREFIX_PART.fullmatch(p) for p in path.split("/"))
        for failed, why in [
            (parts.scheme != "s3" or not parts.netloc,
             "it must start with s3:// and name a bucket"),
            ("?" in url or "#" in url or not (url.isascii() and url.isprintable()),
             "no ? or # part, no space or control character"),
            (not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc,
             "a bucket name is 3-63 of a-z, 0-9, '.' and '-', starting and ending with a letter"
             " or digit"),
            (bool(path) and bad_part, "each part of the prefix is A-Z, a-z, 0-9, '.', '_', '~'"
             " or '-', not empty, '.' or '..'"),
        ]:  # fmt: skip
            if failed:
                raise IndexRepoError(f"{show(url, 80)} is not an s3://BUCKET/PREFIX URL ({why})")
        return cls(parts.netloc, path)

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class _Object:
    """One object to push: its key under the prefix, its bytes (or file) and digests."""

    rel: str
    phase: str
    path: Path
    size: int
    md5: str
    sha256: str
    data: bytes | None = None  # metadata is read once, at planning, and pushed as read


@dataclass
class PushResult:
    """What a push did (or, with ``dry_run``, would do)."""

    to: str
    uploaded: list[str] = field(default_factory=list)
    skipped: int = 0
    bytes: int = 0
    dry_run: bool = False
    timestamp_version: int = 0

    def to_json(self) -> dict[str, Any]:
        """Counts, and the keys (under the prefix) uploaded or to upload as ``objects``."""
        return dataclasses.asdict(self) | {"uploaded": len(self.uploaded), "objects": self.uploaded}


def _object(published: Path, rel: str, phase: str, *, read: bool) -> _Object:
    """``rel`` of ``published`` with its size, MD5 (what S3 ETags are) and SHA-256."""
    path = published / rel
    if path.is_symlink() or not path.is_file():
        raise IndexRepoError(f"{path} is not a regular file; refusing to push it")
    data = path.read_bytes() if read else None
    md5, sha, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with path.open("rb") as f:
        for chunk in [data] if data is not None else iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return _Object(rel, phase, path, size, md5.hexdigest(), sha.hexdigest(), data)


def _metadata_phase(name: str) -> str:
    if (found := _VERSIONED.fullmatch(name)) is None and name != "root.json":
        raise IndexRepoError(f"published/metadata/{name} is not index metadata; refusing to push")
    return "root" if found is None else "snapshot" if found[1] == "snapshot" else "metadata"


def _target_rels(targets: Path) -> Iterator[str]:
    for folder, dirs, files in os.walk(targets):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            rel = (Path(folder) / name).relative_to(targets.parent).as_posix()
            if name.startswith("."):
                continue  # publish's temporary files
            if not all(_KEY_PART.fullmatch(p) and p not in (".", "..") for p in rel.split("/")):
                raise IndexRepoError(
                    f"{show(rel, 80)} in {targets} has characters an object key may not have"
                    " here; refusing to push it"
                )
            yield rel


def _local_objects(published: Path) -> list[_Object]:
    """Every object of ``published`` in upload order, checked and hashed; ``timestamp.json``
    is read first, so everything it names is already there (publish writes it last)."""
    meta = published / "metadata"
    if not (meta / "timestamp.json").is_file():
        raise IndexRepoError(f"{meta} has no timestamp.json; run pm-plugins index publish first")
    found = [_object(published, "metadata/timestamp.json", "timestamp", read=True)]
    for name in sorted(os.listdir(meta)):
        if not name.startswith(".") and name != "timestamp.json":
            found.append(_object(published, f"metadata/{name}", _metadata_phase(name), read=True))
    if (published / "targets").is_dir():
        for rel in _target_rels(published / "targets"):
            found.append(_object(published, rel, "targets", read=False))
    _check_complete(found)
    aliases = [dataclasses.replace(o, rel=o.rel.replace("+", " ")) for o in found if "+" in o.rel]
    return sorted(found + aliases, key=lambda o: (PHASES.index(o.phase), o.rel))


def _version_of(data: bytes | None, what: str) -> dict[str, Any]:
    """The ``signed`` part of TUF metadata, with an integer ``version``."""
    try:
        signed: dict[str, Any] = json.loads(data or b"")["signed"]
        signed["version"] = int(signed["version"])
        return signed
    except (ValueError, KeyError, TypeError) as e:
        raise IndexRepoError(f"{what} is not TUF metadata; refusing to push") from e


def _check_complete(found: list[_Object]) -> None:
    """The snapshot the timestamp names, and every role version it lists, are here."""
    by_rel = {o.rel: o for o in found}
    stamp = _version_of(by_rel["metadata/timestamp.json"].data, "timestamp.json")
    try:
        needed = [f"{int(stamp['meta']['snapshot.json']['version'])}.snapshot.json"]
        snapshot = by_rel.get(f"metadata/{needed[0]}")
        if snapshot is not None:
            listed = _version_of(snapshot.data, needed[0])["meta"]
            needed += [f"{int(v['version'])}.{role}" for role, v in sorted(listed.items())]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise IndexRepoError("timestamp.json or its snapshot is not TUF metadata") from e
    for name in (n for n in [*needed, "root.json"] if f"metadata/{n}" not in by_rel):
        raise IndexRepoError(f"published/metadata/{name} is missing; run pm-plugins index publish")


def _remote(client: S3Client, loc: S3Location) -> dict[str, tuple[int, str]]:
    """``rel -> (size, ETag)`` of what the bucket holds under the prefix."""
    found: dict[str, tuple[int, str]] = {}
    start = loc.key("")
    with talking(f"listing {loc}"):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=start)
        for page in itertools.islice(pages, _MAX_PAGES):  # a server may never say "done"
            for item in page.get("Contents", []):
                rel = item["Key"][len(start) :]
                found[rel] = (int(item.get("Size", -1)), str(item.get("ETag", "")).strip('"'))
    return found


def _same(
    client: S3Client, loc: S3Location, o: _Object, there: tuple[int, str], verify: bool
) -> bool:
    size, etag = there
    if size != o.size:
        return False
    if verify:  # the listing's claims aside: read the bytes back
        with talking(f"reading s3://{loc.bucket}/{loc.key(o.rel)}"):
            body = client.get_object(Bucket=loc.bucket, Key=loc.key(o.rel))["Body"]
            with closing(body):  # its connection goes back to the pool
                return hashlib.sha256(body.read(o.size + 1)).hexdigest() == o.sha256
    if _MD5.fullmatch(etag):
        return etag == o.md5
    with talking(f"reading s3://{loc.bucket}/{loc.key(o.rel)}"):
        head = client.head_object(Bucket=loc.bucket, Key=loc.key(o.rel))
    return head.get("Metadata", {}).get("sha256") == o.sha256


def _check_rollback(client: S3Client, loc: S3Location, stamp: _Object, root: bytes) -> None:
    """Refuse when the bucket's timestamp, signed by this index's timestamp keys, is not older
    than ours (one they did not sign is nothing a reader could have trusted: replaced)."""
    ours = _version_of(stamp.data, "timestamp.json")["version"]
    url = f"s3://{loc.bucket}/{loc.key(stamp.rel)}"
    with talking(f"reading {url}"):
        body = client.get_object(Bucket=loc.bucket, Key=loc.key(stamp.rel))["Body"]
        with closing(body):
            data = body.read(1 << 20)
    try:
        md = Metadata.from_bytes(data)
        Metadata[Root].from_bytes(root).signed.verify_delegate("timestamp", md.signed_bytes,
                                                              md.signatures)  # fmt: skip
        theirs = int(md.signed.version)
    except Exception:  # not TUF metadata, or not signed by this index's timestamp keys
        return
    if theirs >= ours:
        raise IndexRepoError(
            f"{url} is version {theirs}, not older than this index's timestamp version {ours};"
            " pushing it would roll readers back (sign a newer one: pm-plugins index timestamp)"
        )


def _plan(
    client: S3Client, loc: S3Location, objects: list[_Object], verify: bool = False
) -> tuple[list[_Object], int]:
    """What to upload (in order) and how many objects are already there (with `verify`, read
    back and compared, not taken from the listing)."""
    remote = _remote(client, loc)
    todo: list[_Object] = []
    for o in objects:
        there = remote.get(o.rel)
        if there is not None and _same(client, loc, o, there, verify):
            continue
        if there is not None and o.phase in ("metadata", "snapshot"):
            raise IndexRepoError(
                f"s3://{loc.bucket}/{loc.key(o.rel)} already holds different content; refusing"
                " to overwrite a versioned file (was another index pushed to this prefix?)"
            )
        if there is not None and o.phase == "timestamp":
            root = next(r.data for r in objects if r.phase == "root")
            _check_rollback(client, loc, o, root or b"")
        todo.append(o)
    return todo, len(objects) - len(todo)


def _put(client: S3Client, loc: S3Location, o: _Object) -> None:
    key = loc.key(o.rel)
    with talking(f"uploading s3://{loc.bucket}/{key}"), ExitStack() as files:
        answer = client.put_object(
            Bucket=loc.bucket,
            Key=key,
            Body=o.data if o.data is not None else files.enter_context(o.path.open("rb")),
            ContentLength=o.size,
            ContentMD5=base64.b64encode(bytes.fromhex(o.md5)).decode(),
            ContentType=_TYPES.get(o.phase, "application/json"),
            CacheControl=REVALIDATE if o.phase in ("root", "timestamp") else IMMUTABLE,
            Metadata={"sha256": o.sha256},
        )
        etag = str(answer.get("ETag", "")).strip('"')
        if _MD5.fullmatch(etag) and etag != o.md5:
            raise IndexRepoError(
                f"uploading s3://{loc.bucket}/{key} failed: the server stored other bytes"
                f" (ETag {etag}, expected {o.md5})"
            )


def _upload(
    client: S3Client, loc: S3Location, todo: list[_Object], jobs: int, say: Callable[[str], None]
) -> int:
    """Upload ``todo`` phase by phase; the first failure stops before the next phase."""
    done = sent = 0
    for phase in PHASES:
        batch = [o for o in todo if o.phase == phase]
        if not batch:
            continue
        pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="s3-push")
        try:
            futures: dict[Future[None], _Object] = {
                pool.submit(_put, client, loc, o): o for o in batch
            }
            for future in as_completed(futures):
                if (error := future.exception()) is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                    kept = "its previous" if phase == "timestamp" else "no new"
                    raise IndexRepoError(
                        f"{error}; the bucket has {kept} timestamp.json, so readers still see"
                        " the previous index"
                    ) from error
                o = futures[future]
                done, sent = done + 1, sent + o.size
                say(f"uploaded {done} of {len(todo)}: {o.rel} ({o.size} bytes, {sent} in all)")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return sent


def push(
    published: Path,
    to: S3Location | str,
    *,
    client: S3Client | None = None,
    endpoint_url: str | None = None,
    dry_run: bool = False,
    verify: bool = False,
    jobs: int = 4,
    progress: Callable[[str], None] | None = None,
) -> PushResult:
    """Upload the published folder ``published`` to ``to`` in the order described above."""
    loc = to if isinstance(to, S3Location) else S3Location.parse(to)
    objects = _local_objects(Path(published))
    s3 = client if client is not None else make_client(endpoint_url)
    todo, skipped = _plan(s3, loc, objects, verify)
    stamp = _version_of(next(o.data for o in objects if o.phase == "timestamp"), "timestamp")
    result = PushResult(str(loc), [o.rel for o in todo], skipped, sum(o.size for o in todo))
    result.dry_run, result.timestamp_version = dry_run, stamp["version"]
    if not dry_run:
        _upload(s3, loc, todo, jobs, progress or (lambda line: None))
    return result
