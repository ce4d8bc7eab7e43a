"""Wheels written by hand with zipfile, for packaging tests that must not reach the network.

A wheel is a zip with the package's files and a `NAME-VERSION.dist-info/` folder (METADATA,
WHEEL, RECORD). pip installs one found through `--find-links` like any other; these let a
test say exactly what a dependency holds: its tag (true or a lie), its requirements, a
compiled-looking file, a top-level `__main__.py`, a path that climbs out, a symlink.
"""

from __future__ import annotations

import base64
import hashlib
import stat
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

PURE = "py3-none-any"


def wheel(
    folder: Path,
    name: str,
    version: str = "1.0",
    files: Mapping[str, bytes | str] | None = None,
    *,
    requires: Sequence[str] = (),
    tag: str = PURE,
    wheel_tag: str | None = None,
    symlinks: Mapping[str, str] | None = None,
) -> Path:
    """Write `folder/NAME-VERSION-TAG.whl` holding `files` (path -> content; str is UTF-8).

    `tag` is the file name's tag; `wheel_tag` the one its WHEEL file claims (default `tag`),
    so a test can make the two disagree. `symlinks` adds entries marked as symbolic links
    (path -> target), as a hostile zip can."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    content: dict[str, bytes] = {
        path: data.encode() if isinstance(data, str) else data
        for path, data in (files or {}).items()
    }
    content[f"{info}/METADATA"] = metadata.encode()
    content[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {wheel_tag or tag}\n"
    ).encode()
    record = "".join(f"{path},{_digest(data)},{len(data)}\n" for path, data in content.items())
    content[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    target = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(target, "w") as zf:
        for path, data in content.items():
            zf.writestr(path, data)
        for path, link in (symlinks or {}).items():
            entry = zipfile.ZipInfo(path)
            entry.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(entry, link)
    return target


def _digest(data: bytes) -> str:
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
