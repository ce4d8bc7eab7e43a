"""The values a person set for plugins' config options, kept in `config.json` across restarts.

Why this exists: options live in the running host's memory, registered by plugins at each
start; what the user chose must survive a restart, and `uninstall --purge` must be able to
forget one plugin's choices without a host running. This module owns that file: its format,
a strict read, and atomic read-modify-write changes under a lock of their own, so the booted
host and the command line can both change it.

    {"format": 1, "values": {"plugins/allowlist/rules": {"type": "string_array",
                                                         "value": ["example.org"],
                                                         "signers": ["<key id>"]}}}

A value is plain JSON of its option's type: "string", "string_array", "int", "bool", or
"any" (a JSON string, list of strings, integer or boolean).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys import strict_json
from keys._fs import write_atomic
from keys.errors import StrictJSONError
from loader.errors import LoaderError

FORMAT = 1
TYPES = ("string", "string_array", "int", "bool", "any")
#: The file is small; a larger one is refused rather than read.
MAX_BYTES = 8 << 20
#: bool is a subclass of int in Python, so "int" is checked by exact type.
_INT_LIMIT = 1 << 63


class ConfigValuesError(LoaderError):
    """config.json cannot be read or a value does not fit its option."""


@dataclass(frozen=True)
class SavedValue:
    """One value a person set: its option's type, the plain JSON value, and the key ids that
    signed the plugin's release when it was set (empty: an unsigned build, or the host's)."""

    type: str
    value: Any
    signers: tuple[str, ...] = ()

    def fits(self, signers: tuple[str, ...]) -> bool:
        """Whether a release signed by `signers` may receive this value: one key in common,
        or both unsigned. A plugin of the same name by another publisher gets its default."""
        return bool(set(self.signers) & set(signers)) or not (self.signers or signers)


def check_plain(value: Any, type_name: str, key: str) -> Any:
    """`value` when it is plain JSON of `type_name`, else ConfigValuesError naming `key`."""
    if type_name not in TYPES:
        raise ConfigValuesError(f"config option {key} has an unknown type {type_name!r}")
    if _fits(value, type_name):
        return value
    shown = json.dumps(value)[:60]
    raise ConfigValuesError(f"config option {key} takes {_TYPE_TEXT[type_name]}, not {shown}")


_TYPE_TEXT = {
    "string": "a string",
    "string_array": "a list of strings",
    "int": "a whole number",
    "bool": "true or false",
    "any": "a string, a list of strings, a whole number or true/false",
}


def _fits(value: Any, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "string_array":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if type_name == "int":
        return type(value) is int and -_INT_LIMIT <= value < _INT_LIMIT
    if type_name == "bool":
        return isinstance(value, bool)
    return any(_fits(value, t) for t in ("string", "string_array", "int", "bool"))


def read_values(path: Path) -> dict[str, SavedValue]:
    """Every saved value by full key; a missing file means none. ConfigValuesError when the
    file is not what this module writes."""
    if not path.exists():
        return {}
    source = str(path)
    try:
        doc = strict_json.load(path, source=source, max_bytes=MAX_BYTES)
        strict_json.expect(doc, dict, where=source, what="the document")
        fmt = strict_json.require(doc, "format", int, where=source)
        if fmt != FORMAT:
            raise ConfigValuesError(f"{source} has format {fmt}; this version reads {FORMAT}")
        values = strict_json.require(doc, "values", dict, where=source)
        saved: dict[str, SavedValue] = {}
        for key, item in values.items():
            where = f'{source}: "values"/"{key}"'
            strict_json.expect(item, dict, where=where, what="the entry")
            type_name = strict_json.require(item, "type", str, where=where)
            if "value" not in item:
                raise ConfigValuesError(f'{where}: missing field "value"')
            signers = strict_json.optional(item, "signers", list, [], where=where)
            if not all(isinstance(k, str) for k in signers):
                raise ConfigValuesError(f'{where}: "signers" must be a list of key ids')
            value = check_plain(item["value"], type_name, key)
            saved[key] = SavedValue(type_name, value, tuple(signers))
        return saved
    except StrictJSONError as err:
        raise ConfigValuesError(str(err)) from err


def _dumps(values: dict[str, SavedValue]) -> bytes:
    doc = {
        "format": FORMAT,
        "values": {k: _entry(v) for k, v in sorted(values.items())},
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _entry(saved: SavedValue) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": saved.type, "value": saved.value}
    if saved.signers:
        entry["signers"] = list(saved.signers)
    return entry


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def change_values(
    path: Path, change: Callable[[dict[str, SavedValue]], None]
) -> dict[str, SavedValue]:
    """Read, let `change` edit the dict in place, write atomically (0600); returns the result.
    Serialised by a lock file beside `path`, so a host and a command never lose a change."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(path):
        values = read_values(path)
        before = dict(values)
        change(values)
        if values != before:
            write_atomic(path, _dumps(values), 0o600)
        return values


def save_value(path: Path, key: str, saved: SavedValue | None) -> None:
    """Record (or, with None, forget) the value a person set for `key`."""

    def edit(values: dict[str, SavedValue]) -> None:
        if saved is None:
            values.pop(key, None)
        else:
            check_plain(saved.value, saved.type, key)
            values[key] = saved

    change_values(path, edit)


def forget_plugin(path: Path, name: str) -> list[str]:
    """Forget every value under `plugins/<name>/` (uninstall --purge); returns the keys."""
    prefix = f"plugins/{name}/"
    gone: list[str] = []

    def edit(values: dict[str, SavedValue]) -> None:
        gone.extend(k for k in values if k.startswith(prefix))
        for key in gone:
            del values[key]

    if path.exists():
        change_values(path, edit)
    return sorted(gone)
