"""Strict JSON reading for every file the tool reads, and exact field-type checks.

What it is for: turning bytes into Python values under the input rules of DESIGN.md, so
that two parsers can never disagree about what a signed document says:

- UTF-8 only: a byte order mark, UTF-16 or UTF-32 (any NUL byte) and invalid UTF-8 are
  refused; so are lone surrogates written as ``\\ud800`` escapes;
- duplicate keys in an object are refused, naming the key and where the object is;
- ``NaN``, ``Infinity`` and ``-Infinity`` are refused, and so are floats that overflow
  to infinity (``1e400``);
- size, nesting depth and number length are bounded; depth is checked by a bracket scan
  *before* parsing, so ``RecursionError`` cannot happen (it is caught anyway).

Every failure is a :class:`~keys.errors.StrictJSONError` whose message is one sentence
naming ``source`` and where in the document the problem is (line and column, or a
JSON-pointer-like path such as ``/2/config``).

:func:`require` and :func:`optional` check one field's type exactly: ``true`` is not an
int, ``1`` is not a bool, ``"123"`` is not an int, ``123.0`` is not an int.

What it leaves to others: what the fields mean. Callers build the ``where`` text
(e.g. ``'plugins.json: entry 2 ("hosts")'``) and validate values (names, versions).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from keys.errors import StrictJSONError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NUMBER_LEN",
    "describe_value",
    "expect",
    "load",
    "loads",
    "optional",
    "require",
]

DEFAULT_MAX_BYTES = 1_048_576
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_NUMBER_LEN = 32

_BOMS = (
    (b"\xef\xbb\xbf", "a UTF-8 byte order mark"),
    (b"\xff\xfe", "a UTF-16 or UTF-32 byte order mark"),
    (b"\xfe\xff", "a UTF-16 byte order mark"),
    (b"\x00\x00\xfe\xff", "a UTF-32 byte order mark"),
)


class _Fail(Exception):
    """Raised inside parser hooks; turned into a StrictJSONError by :func:`loads`."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _DupDict(dict[str, Any]):
    """An object in which a key appeared twice; found after parsing to name its path."""

    duplicate: str = ""


def _fail(source: str, what: str) -> NoReturn:
    raise StrictJSONError(f"{source}: {what}")


def _line_col(text: str | bytes, index: int) -> tuple[int, int]:
    nl: Any = "\n" if isinstance(text, str) else b"\n"
    line = text.count(nl, 0, index) + 1
    col = index - (text.rfind(nl, 0, index) + 1) + 1
    return line, col


def _check_depth(text: str, max_depth: int, source: str) -> None:
    """Scan brackets outside strings; refuse nesting deeper than ``max_depth``."""
    depth = 0
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                line, col = _line_col(text, i)
                _fail(
                    source,
                    f"nesting is deeper than {max_depth} levels at line {line}, column {col}",
                )
        elif ch in "]}" and depth > 0:
            depth -= 1


def _pointer(path: list[str | int]) -> str:
    if not path:
        return "the top level"
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "/" + "/".join(parts)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _walk(value: Any, source: str) -> None:
    """Find duplicate-key markers and lone surrogates, in document order, iteratively."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if isinstance(node, _DupDict):
                key = json.dumps(node.duplicate, ensure_ascii=False)
                _fail(source, f"the object at {_pointer(path)} has the key {_short(key)} twice")
            children: list[tuple[Any, list[str | int]]] = []
            for k, v in node.items():
                _check_text(k, path, source)
                children.append((v, [*path, k]))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend((v, [*path, i]) for i, v in reversed(list(enumerate(node))))
        elif isinstance(node, str):
            _check_text(node, path, source)


def _check_text(text: str, path: list[str | int], source: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise StrictJSONError(
            f"{source}: the string at {_pointer(path)} contains a lone surrogate escape"
        ) from e


def loads(
    data: bytes,
    *,
    source: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_number_len: int = DEFAULT_MAX_NUMBER_LEN,
) -> Any:
    """Parse ``data`` as strict JSON; ``source`` names the document in every error."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"loads() wants bytes, not {type(data).__name__}")
    data = bytes(data)
    text = _decode(data, source, max_bytes)
    _check_depth(text, max_depth, source)
    value = _parse(text, source, max_number_len)
    _walk(value, source)
    return value


def _decode(data: bytes, source: str, max_bytes: int) -> str:
    """``data`` as text, refusing it if too large, not UTF-8, or with a BOM or a NUL byte."""
    if len(data) > max_bytes:
        _fail(source, f"is larger than the limit of {max_bytes} bytes")
    for bom, name in _BOMS:
        if data.startswith(bom):
            _fail(source, f"starts with {name}; only UTF-8 without a byte order mark is accepted")
    nul = data.find(b"\x00")
    if nul >= 0:
        line, col = _line_col(data, nul)
        _fail(
            source,
            f"contains a NUL byte at line {line}, column {col}"
            " (UTF-16 or UTF-32?); only UTF-8 is accepted",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(data, e.start)
        raise StrictJSONError(f"{source}: is not valid UTF-8 at line {line}, byte {col}") from e
    return text


def _parse(text: str, source: str, max_number_len: int) -> Any:
    """Parse ``text`` with hooks that mark duplicate keys and refuse constants and big numbers."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                dup = _DupDict(items)
                dup.duplicate = k
                return dup
            out[k] = v
        return out

    def constant(name: str) -> NoReturn:
        raise _Fail(f"contains {name}, which is not a JSON number")

    def number_text(s: str) -> None:
        if len(s) > max_number_len:
            raise _Fail(
                f"contains a number longer than {max_number_len} characters ({_short(s, 20)})"
            )

    def parse_int(s: str) -> int:
        number_text(s)
        return int(s)

    def parse_float(s: str) -> float:
        number_text(s)
        f = float(s)
        if not math.isfinite(f):
            raise _Fail(f"contains the number {_short(s, 20)}, which is too large")
        return f

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=constant,
            parse_int=parse_int,
            parse_float=parse_float,
        )
    except _Fail as e:
        raise StrictJSONError(f"{source}: {e.what}") from e
    except json.JSONDecodeError as e:
        raise StrictJSONError(
            f"{source}: is not valid JSON at line {e.lineno}, column {e.colno} ({e.msg})"
        ) from e
    except RecursionError as e:
        raise StrictJSONError(f"{source}: nesting is too deep") from e
    return value


def read_regular(path: Path, max_bytes: int, *, source: str) -> bytes:
    """At most `max_bytes + 1` bytes of the regular file at `path`.

    Opened without blocking and checked to be a regular file, so a FIFO or a device put
    in place of a state file is refused at once instead of hanging every command. A
    missing file raises `FileNotFoundError` (callers decide what absence means); any other
    failure is a :class:`StrictJSONError` naming `source`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StrictJSONError(f"{source}: is not a regular file")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise StrictJSONError(f"{source}: cannot be read ({e.strerror or e})") from e
    finally:
        os.close(fd)


def load(
    path: Path,
    *,
    source: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_number_len: int = DEFAULT_MAX_NUMBER_LEN,
) -> Any:
    """Read at most ``max_bytes`` from ``path`` and parse it with :func:`loads`.

    ``source`` defaults to ``str(path)``. A file that cannot be read (missing included)
    is a :class:`StrictJSONError`; callers that treat a missing file specially check
    ``path.exists()`` first or catch ``FileNotFoundError`` via ``__cause__``.
    """
    name = str(path) if source is None else source
    try:
        data = read_regular(path, max_bytes, source=name)
    except OSError as e:
        raise StrictJSONError(f"{name}: cannot be read ({e.strerror or e})") from e
    return loads(
        data,
        source=name,
        max_bytes=max_bytes,
        max_depth=max_depth,
        max_number_len=max_number_len,
    )


# ---- exact field types ------------------------------------------------------------

_KIND_NAMES: dict[type, str] = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if k not in _KIND_NAMES:
            raise ValueError(f"unsupported JSON kind {k!r}")
    return kinds


def _matches(value: Any, kinds: tuple[type, ...]) -> bool:
    t = type(value)
    if t is bool:
        return bool in kinds
    if t is int:
        return int in kinds or float in kinds
    if t is float:
        return float in kinds
    if isinstance(value, dict):
        return dict in kinds
    return t in kinds


def describe_value(value: Any) -> str:
    """A short human rendering of a JSON value for an error message."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        return _short(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except ValueError:
        return _short(repr(value))


def _expected(kinds: tuple[type, ...]) -> str:
    names = [_KIND_NAMES[k] for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def expect(value: Any, kind: type | tuple[type, ...], *, where: str, what: str) -> Any:
    """Return ``value`` if its JSON type is exactly ``kind``; else raise one sentence.

    ``what`` names the thing checked, e.g. ``'field "name"'`` or ``"the document"``.
    ``bool`` is never an ``int``; ``float`` accepts whole numbers too (``1`` is a
    number), but ``int`` refuses ``1.0``.
    """
    kinds = _kinds(kind)
    if not _matches(value, kinds):
        raise StrictJSONError(
            f"{where}: {what} must be {_expected(kinds)}, not {describe_value(value)}"
        )
    return value


def require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, where: str) -> Any:
    """Return ``obj[key]``, refusing a missing key or a value not exactly of ``kind``."""
    kinds = _kinds(kind)
    if key not in obj:
        raise StrictJSONError(f'{where}: field "{key}" is missing')
    return expect(obj[key], kinds, where=where, what=f'field "{key}"')


def optional(
    obj: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    default: Any,
    *,
    where: str,
) -> Any:
    """Return ``obj[key]`` checked like :func:`require`, or ``default`` if it is absent.

    A present ``null`` is refused unless ``type(None)`` is among the kinds.
    """
    kinds = _kinds(kind)
    if key not in obj:
        return default
    return expect(obj[key], kinds, where=where, what=f'field "{key}"')
