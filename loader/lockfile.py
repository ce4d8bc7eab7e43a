"""`plugins.lock`: which release of each plugin is installed, and who signed it.

Why this exists: `plugins.json` is the user's choice (what runs, with what config); the lock
is the installer's record (name -> version, artifact SHA-256, signer key id) that the loader
uses to pick the installed version when plugins.json names none, and that `list` shows.
Read under the input rules (strict JSON, exact types, names by `fullmatch`); written
(`dumps_lock`) together with plugins.json through `loader.journal`, so a crash leaves the old
pair or the new one.

    {"version": 1, "plugins": {"hosts": {"version": "1.0.0", "sha256": "<hex>",
                                         "signer": "<key id>" | null}}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys import strict_json
from keys.errors import StrictJSONError
from loader.errors import LoaderError
from loader.fields import check_name, check_unknown, check_version

FORMAT_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


class LockFileError(LoaderError):
    """plugins.lock is unreadable or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Locked:
    """One installed release."""

    version: str
    sha256: str
    signer: str | None  # None: installed unsigned, in dev mode


def read_lock(path: Path) -> dict[str, Locked]:
    """The lock at `path`; a missing file is an empty lock."""
    if not path.exists():
        return {}
    source = str(path)
    try:
        doc = strict_json.load(path, source=source)
        strict_json.expect(doc, dict, where=source, what="the document")
        check_unknown(doc, ("version", "plugins"), where=source, what="the document")
        version = strict_json.require(doc, "version", int, where=source)
        if version != FORMAT_VERSION:
            raise StrictJSONError(f"{source}: format version {version} is not supported")
        plugins = strict_json.require(doc, "plugins", dict, where=source)
        locked: dict[str, Locked] = {}
        for key, value in plugins.items():
            name = check_name(key, where=source, what='a key of field "plugins"')
            where = f'{source}: entry "{name}"'
            strict_json.expect(value, dict, where=source, what=f'entry "{name}"')
            fields = ("version", "sha256", "signer")
            check_unknown(value, fields, where=source, what=f'entry "{name}"')
            release = strict_json.require(value, "version", str, where=where)
            check_version(release, where=where)
            digest = strict_json.require(value, "sha256", str, where=where)
            if _SHA256.fullmatch(digest) is None:
                raise StrictJSONError(f'{where}: field "sha256" is not 64 lowercase hex digits')
            signer = strict_json.require(value, "signer", (str, type(None)), where=where)
            if signer is not None and _SHA256.fullmatch(signer) is None:
                raise StrictJSONError(f'{where}: field "signer" is not a key id')
            locked[name] = Locked(release, digest, signer)
    except StrictJSONError as err:
        raise LockFileError(str(err)) from err
    return locked


def dumps_lock(locked: dict[str, Locked]) -> bytes:
    """The bytes of a lock file naming `locked`."""
    doc: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "plugins": {
            name: {"version": e.version, "sha256": e.sha256, "signer": e.signer}
            for name, e in sorted(locked.items())
        },
    }
    return (json.dumps(doc, indent=2) + "\n").encode()
