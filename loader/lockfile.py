"""`plugins.lock`: which release of each plugin is installed, and who signed it.

Why this exists: `plugins.json` is the user's choice (what runs, with what config); the lock
is the installer's record, and it binds: name -> version, artifact SHA-256, the keys that
signed it (the plugin's pinned publisher: a release signed by none of them needs the user's
explicit consent), the registry it came from, what the user granted it (`privileged`,
which a release not signed by an official key needs), and, for a plugin a privileged plugin
registered while the host ran (`RegisterPlugin`), which plugin that was (`registered_by`:
only it may unregister it; absent for what a person installed). The loader refuses a release whose
bytes, version or signers differ from it, and `install --locked` restores exactly it on a new
machine. Read under the input rules (strict JSON, exact types, names by `fullmatch`; format 1,
with one `signer`, is still read); written (`dumps_lock`) together with plugins.json through
`loader.journal`, so a crash leaves the old pair or the new one.

    {"version": 2, "plugins": {"hosts": {"version": "1.0.0", "sha256": "<hex>",
                                         "signers": ["<key id>", ...], "registry": "default",
                                         "grants": ["privileged"]}}}

`signers` is empty for a release installed unsigned (dev mode); `registry` is null for one
installed from a path. `registered_by` (a plugin's name) is optional in format 2 and written
only when set, so a lock without it reads as before.
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

FORMAT_VERSION = 2
_READABLE = (1, 2)
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: What the user may grant a plugin beyond what its signers earn it.
GRANTS = ("privileged",)
_FIELDS = ("version", "sha256", "signers", "registry", "grants", "registered_by")


class LockFileError(LoaderError):
    """plugins.lock is unreadable or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Locked:
    """One installed release."""

    version: str
    sha256: str
    signers: tuple[str, ...] = ()  # the trusted keys that signed it; () installed unsigned
    registry: str | None = None  # the registry it came from; None from a path
    grants: tuple[str, ...] = ()  # what the user granted it (GRANTS)
    registered_by: str | None = None  # the plugin that registered it at run time, if one did

    @property
    def signer(self) -> str | None:
        """The first signer; None for a release installed unsigned (dev mode)."""
        return self.signers[0] if self.signers else None


def read_lock(path: Path) -> dict[str, Locked]:
    """The lock at `path`; a missing file is an empty lock.

    Raises:
        LockFileError: unreadable or malformed, naming the file, entry and field.
    """
    if not path.exists():
        return {}
    source = str(path)
    try:
        doc = strict_json.load(path, source=source)
        strict_json.expect(doc, dict, where=source, what="the document")
        check_unknown(doc, ("version", "plugins"), where=source, what="the document")
        version = strict_json.require(doc, "version", int, where=source)
        if version not in _READABLE:
            raise StrictJSONError(f"{source}: format version {version} is not supported")
        plugins = strict_json.require(doc, "plugins", dict, where=source)
        locked: dict[str, Locked] = {}
        for key, value in plugins.items():
            name = check_name(key, where=source, what='a key of field "plugins"')
            strict_json.expect(value, dict, where=source, what=f'entry "{name}"')
            locked[name] = _entry(value, version, where=f'{source}: entry "{name}"')
    except StrictJSONError as err:
        raise LockFileError(str(err)) from err
    return locked


def _entry(value: dict[str, Any], format_version: int, *, where: str) -> Locked:
    fields = ("version", "sha256", "signer") if format_version == 1 else _FIELDS
    check_unknown(value, fields, where=where, what="the entry")
    release = strict_json.require(value, "version", str, where=where)
    check_version(release, where=where)
    digest = strict_json.require(value, "sha256", str, where=where)
    if _SHA256.fullmatch(digest) is None:
        raise StrictJSONError(f'{where}: field "sha256" is not 64 lowercase hex digits')
    registry, grants, registered_by = None, [], None
    if format_version == 1:
        signer = strict_json.require(value, "signer", (str, type(None)), where=where)
        signers: list[Any] = [] if signer is None else [signer]
    else:
        signers = strict_json.require(value, "signers", list, where=where)
        registry = strict_json.require(value, "registry", (str, type(None)), where=where)
        grants = strict_json.require(value, "grants", list, where=where)
        registered_by = strict_json.optional(
            value, "registered_by", (str, type(None)), None, where=where
        )
    if not all(isinstance(k, str) and _SHA256.fullmatch(k) for k in signers):
        raise StrictJSONError(f'{where}: field "signers" holds something that is not a key id')
    if registry is not None:
        check_name(registry, where=where, what='field "registry"')
    if registered_by is not None:
        check_name(registered_by, where=where, what='field "registered_by"')
    if not all(g in GRANTS for g in grants):
        raise StrictJSONError(f'{where}: field "grants" may hold only {", ".join(GRANTS)}')
    return Locked(release, digest, tuple(signers), registry, tuple(grants), registered_by)


def dumps_lock(locked: dict[str, Locked]) -> bytes:
    """The bytes of a lock file naming `locked`."""
    doc: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "plugins": {name: _entry_json(e) for name, e in sorted(locked.items())},
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _entry_json(e: Locked) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": e.version,
        "sha256": e.sha256,
        "signers": list(e.signers),
        "registry": e.registry,
        "grants": list(e.grants),
    }
    if e.registered_by is not None:  # only then: a lock without registrations stays as it was
        out["registered_by"] = e.registered_by
    return out
