"""``plugins.json``: the user's choice of which plugins run (the format of portmaster PR #834).

What it is for: turning the bytes of ``plugins.json`` into a list of :class:`PluginEntry`
under the input rules of DESIGN.md, and writing such a list back atomically. The format is
a JSON array of objects::

    [{"name": "hosts", "types": ["resolver"], "config": {...}, "privileged": false,
      "disableAutostart": false, "version": "1.2.0"}]

``name`` is required; ``types``, ``config``, ``privileged`` and ``disableAutostart`` are
optional as in the PR's Go struct (which writes them with ``omitempty``); ``version`` is our
optional addition (PEP 440). ``enabled`` (what issues call it) is read as the negation of
``disableAutostart``; when both are present they must agree. It is never written.

Every refusal is a :class:`PluginsFileError` whose message is one sentence naming the
file, the entry (1-based index, and its name when known) and the field. Two readers:
:func:`read_plugins_json` refuses the whole file for any fault (the installer, which writes
the file back and must not drop what it cannot read); :func:`read_plugins_file` (boot,
`verify`) refuses a bad entry alone, so the valid ones still boot, and turns an unknown field
into a warning that names the field it probably meant (`"privilegd"`).

What it leaves to others: whether a named plugin is installed, signed or startable (the
loader's verification), and what a plugin's ``config`` means (the plugin's).

Field rules (names, types, versions, unknown fields) are :mod:`loader.fields`, shared with
the manifest, the lock, the registries file and ``plugin.toml``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keys import strict_json
from keys._fs import write_atomic
from keys.errors import StrictJSONError
from loader.errors import LoaderError
from loader.fields import (
    check_name,
    check_types,
    check_unknown,
    check_version,
    is_identifier,
    show,
)

__all__ = [
    "PluginEntry",
    "PluginsFile",
    "PluginsFileError",
    "RefusedEntry",
    "dumps_plugins_json",
    "parse_plugins_file",
    "parse_plugins_json",
    "read_plugins_file",
    "read_plugins_json",
    "write_plugins_json",
]

_FIELDS = ("name", "types", "config", "privileged", "disableAutostart", "enabled", "version")


class PluginsFileError(LoaderError):
    """``plugins.json`` is unreadable or malformed; the message names file, entry and field."""


@dataclass(frozen=True)
class PluginEntry:
    """One plugin the user configured.

    ``config`` is the compact JSON serialization (UTF-8) of the entry's ``"config"`` value,
    the raw bytes handed to the plugin in Configure; ``b""`` when absent or ``null``.
    ``disable_autostart`` is ``True`` when the plugin must not start at boot.
    """

    name: str
    types: tuple[str, ...] = ()
    config: bytes = b""
    privileged: bool = False
    disable_autostart: bool = False
    version: str | None = None

    @property
    def enabled(self) -> bool:
        """The negation of :attr:`disable_autostart`."""
        return not self.disable_autostart


@dataclass(frozen=True)
class RefusedEntry:
    """An entry :func:`read_plugins_file` refused, alone: its 1-based index, its name when
    it has a valid one, and the one-sentence reason."""

    index: int
    name: str | None
    reason: str


@dataclass
class PluginsFile:
    """What :func:`read_plugins_file` found: the valid entries, the refused ones, warnings."""

    entries: list[PluginEntry] = field(default_factory=list)
    refused: list[RefusedEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _entry(obj: Any, index: int, source: str, warnings: list[str] | None = None) -> PluginEntry:
    """One entry; unknown fields refuse it, unless `warnings` collects them instead."""
    where = f"{source}: entry {index}"
    strict_json.expect(obj, dict, where=where, what="the entry")
    name = check_name(
        strict_json.require(obj, "name", str, where=where), where=where, what='field "name"'
    )
    where = f"{source}: entry {index} ({show(name)})"
    if warnings is None:
        check_unknown(obj, _FIELDS, where=where, what="the entry")
    else:
        warnings += [_unknown_field(where, key) for key in obj if key not in _FIELDS]
    types = check_types(obj["types"], where=where, non_empty=False) if "types" in obj else ()

    config = b""
    raw = obj.get("config")
    if raw is not None:
        config = json.dumps(
            raw, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()

    privileged = strict_json.optional(obj, "privileged", bool, False, where=where)
    disable = strict_json.optional(obj, "disableAutostart", bool, None, where=where)
    enabled = strict_json.optional(obj, "enabled", bool, None, where=where)
    if disable is not None and enabled is not None and disable == enabled:
        raise StrictJSONError(
            f'{where}: field "enabled" is {json.dumps(enabled)} but field "disableAutostart"'
            f" is {json.dumps(disable)}; they contradict each other"
        )
    if disable is None:
        disable = False if enabled is None else not enabled

    version = None
    if "version" in obj:
        check_version(obj["version"], where=where)
        version = str(obj["version"])
    return PluginEntry(
        name=name,
        types=types,
        config=config,
        privileged=bool(privileged),
        disable_autostart=bool(disable),
        version=version,
    )


def parse_plugins_json(data: bytes, *, source: str = "plugins.json") -> list[PluginEntry]:
    """Parse the bytes of a ``plugins.json``; refuse anything off the format.

    Raises :class:`PluginsFileError` (one sentence naming ``source``, entry and field).
    """
    try:
        doc = strict_json.loads(data, source=source)
        strict_json.expect(doc, list, where=source, what="the top level")
        entries: list[PluginEntry] = []
        first: dict[str, int] = {}
        for index, obj in enumerate(doc, 1):
            entry = _entry(obj, index, source)
            if entry.name in first:
                raise StrictJSONError(
                    f'{source}: entry {index} ({show(entry.name)}): field "name" repeats'
                    f" the name of entry {first[entry.name]}"
                )
            first[entry.name] = index
            entries.append(entry)
    except StrictJSONError as err:
        raise PluginsFileError(str(err)) from err
    return entries


def _unknown_field(where: str, key: str) -> str:
    close = difflib.get_close_matches(key, _FIELDS, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"{where}: unknown field {show(key)} is ignored{hint}"


def parse_plugins_file(data: bytes, *, source: str = "plugins.json") -> PluginsFile:
    """Parse leniently: a bad entry is refused alone, an unknown field is a warning.

    Raises :class:`PluginsFileError` only when the file as a whole is unreadable (not
    JSON, not an array)."""
    try:
        doc = strict_json.loads(data, source=source)
        strict_json.expect(doc, list, where=source, what="the top level")
    except StrictJSONError as err:
        raise PluginsFileError(str(err)) from err
    found = PluginsFile()
    first: dict[str, int] = {}
    for index, obj in enumerate(doc, 1):
        name = obj.get("name") if isinstance(obj, dict) else None
        try:
            entry = _entry(obj, index, source, found.warnings)
        except StrictJSONError as err:
            valid = isinstance(name, str) and is_identifier(name) and name not in first
            known = name if valid else None
            found.refused.append(RefusedEntry(index, known, str(err)))
            continue
        if entry.name in first:
            found.refused.append(
                RefusedEntry(
                    index,
                    None,
                    f'{source}: entry {index} ({show(entry.name)}): field "name" repeats the '
                    f"name of entry {first[entry.name]}; this entry is ignored",
                )
            )
            continue
        first[entry.name] = index
        found.entries.append(entry)
    return found


def _read_bytes(p: Path) -> bytes | None:
    try:
        return strict_json.read_regular(p, strict_json.DEFAULT_MAX_BYTES, source=str(p))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise PluginsFileError(f"{p}: cannot be read ({err.strerror or err})") from err
    except StrictJSONError as err:
        raise PluginsFileError(str(err)) from err


def read_plugins_json(path: Path | str) -> list[PluginEntry]:
    """Read and parse ``path`` strictly; a missing file is an empty list (nothing
    configured)."""
    p = Path(path)
    data = _read_bytes(p)
    return [] if data is None else parse_plugins_json(data, source=str(p))


def read_plugins_file(path: Path | str) -> PluginsFile:
    """Read ``path`` leniently (:func:`parse_plugins_file`); a missing file is empty."""
    p = Path(path)
    data = _read_bytes(p)
    return PluginsFile() if data is None else parse_plugins_file(data, source=str(p))


def _to_json(entry: PluginEntry) -> dict[str, Any]:
    obj: dict[str, Any] = {"name": entry.name, "types": list(entry.types)}
    if entry.config:
        try:
            obj["config"] = strict_json.loads(entry.config, source=f"the config of {entry.name}")
        except StrictJSONError as err:
            raise ValueError(str(err)) from err
    obj["privileged"] = entry.privileged
    obj["disableAutostart"] = entry.disable_autostart
    if entry.version is not None:
        obj["version"] = entry.version
    return obj


def dumps_plugins_json(entries: Iterable[PluginEntry]) -> bytes:
    """The bytes :func:`write_plugins_json` writes (2-space indented, trailing newline).

    Raises ``ValueError`` for entries that :func:`parse_plugins_json` would refuse (a
    caller's bug): what is written can always be read back, equal.
    """
    items = list(entries)
    data = (
        json.dumps([_to_json(e) for e in items], ensure_ascii=False, indent=2, allow_nan=False)
        + "\n"
    ).encode()
    try:
        parse_plugins_json(data, source="plugins.json to write")
    except PluginsFileError as err:
        raise ValueError(str(err)) from err
    return data


def write_plugins_json(path: Path | str, entries: Iterable[PluginEntry]) -> None:
    """Write ``entries`` to ``path`` atomically (temp file in the same directory, fsync,
    ``os.replace``, directory fsync). Keeps the mode of an existing file (else 0644)."""
    p = Path(path)
    data = dumps_plugins_json(entries)
    try:
        mode = p.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    write_atomic(p, data, mode)
