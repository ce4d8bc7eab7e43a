"""The field rules every file the tool reads shares: one vocabulary, one set of messages.

Why this exists: plugins.json, signed manifests, the lock, the registries file, TUF custom
fields and ``plugin.toml`` all name plugins, list types and carry PEP 440 versions. Each
rule is written once here, over the strict JSON reader's type checks
(:func:`keys.strict_json.expect`, ``require``, ``optional``, re-exported), so that a name
that one file accepts is a name every other file accepts, and a refusal reads the same
wherever it happens: one sentence naming the file (``where``), the field (``what``) and
the value, with control characters made visible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from packaging.version import InvalidVersion, Version

from keys import strict_json
from keys.errors import StrictJSONError
from keys.strict_json import expect, optional, require

__all__ = [
    "KNOWN_TYPES",
    "NAME_PATTERN",
    "check_name",
    "check_types",
    "check_unknown",
    "check_version",
    "expect",
    "is_identifier",
    "optional",
    "require",
    "show",
]

#: Plugin and host-module names: lowercase letters, digits, ``_`` and ``-``, 1-64 long.
#: Always used with ``fullmatch`` (``match`` with ``$`` would admit a trailing newline).
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

#: The plugin types a plugin may declare: the PR's four plus our ``hook``.
KNOWN_TYPES: tuple[str, ...] = ("base", "decider", "reporter", "resolver", "hook")

_MAX_VERSION_LEN = 64


def is_identifier(value: str) -> bool:
    """Whether ``value`` is a valid plugin or host-module name (see :data:`NAME_PATTERN`)."""
    return NAME_PATTERN.fullmatch(value) is not None


def show(value: str, limit: int = 40) -> str:
    """A string quoted and escaped for a message (control characters visible), shortened."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def check_name(value: Any, *, where: str, what: str) -> str:
    """Return ``value`` if it is a string matching the identifier rule, else refuse."""
    strict_json.expect(value, str, where=where, what=what)
    if not is_identifier(value):
        raise StrictJSONError(
            f"{where}: {what} is {show(value)}, which is not a plain name"
            " (1-64 of a-z, 0-9, _ and -, starting with a letter or digit)"
        )
    return str(value)


def check_types(value: Any, *, where: str, non_empty: bool) -> tuple[str, ...]:
    """Return the ``types`` list as a tuple: strings, known, no duplicates."""
    strict_json.expect(value, list, where=where, what='field "types"')
    if non_empty and not value:
        raise StrictJSONError(f'{where}: field "types" is empty; at least one type is needed')
    seen: list[str] = []
    for i, item in enumerate(value, 1):
        strict_json.expect(item, str, where=where, what=f'item {i} of field "types"')
        if item not in KNOWN_TYPES:
            raise StrictJSONError(
                f'{where}: field "types" names the unknown type {show(item)}'
                f" (known: {', '.join(KNOWN_TYPES)})"
            )
        if item in seen:
            raise StrictJSONError(f'{where}: field "types" lists the type {show(item)} twice')
        seen.append(item)
    return tuple(seen)


def check_version(value: Any, *, where: str, what: str = 'field "version"') -> Version:
    """Return the parsed PEP 440 version of the string ``value``, or refuse."""
    strict_json.expect(value, str, where=where, what=what)
    text = str(value)
    bad = (
        not text
        or len(text) > _MAX_VERSION_LEN
        or text != text.strip()
        or not text.isascii()
        or not text.isprintable()
    )
    if not bad:
        try:
            return Version(text)
        except InvalidVersion:
            pass
    raise StrictJSONError(f"{where}: {what} is {show(text)}, which is not a PEP 440 version")


def check_unknown(obj: Mapping[str, Any], known: Iterable[str], *, where: str, what: str) -> None:
    """Refuse fields of ``obj`` not in ``known``, naming them."""
    allowed = set(known)
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        names = ", ".join(show(k) for k in unknown)
        plural = "fields" if len(unknown) > 1 else "field"
        raise StrictJSONError(f"{where}: {what} has the unknown {plural} {names}")
