"""keys.strict_json: every way a JSON file can be ambiguous is one clean sentence."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from keys.errors import KeysError, StrictJSONError
from keys.strict_json import describe_value, expect, load, loads, optional, require

SRC = "plugins.json"


def refused(data: bytes, **limits: int) -> str:
    with pytest.raises(StrictJSONError) as info:
        loads(data, source=SRC, **limits)
    message = str(info.value)
    assert message.startswith(f"{SRC}: ")
    assert "\n" not in message
    return message


def test_plain_document_parses() -> None:
    data = b'[{"name": "hosts", "types": ["resolver"], "privileged": false, "n": 1.5}]'
    assert loads(data, source=SRC) == [
        {"name": "hosts", "types": ["resolver"], "privileged": False, "n": 1.5}
    ]


def test_strict_json_error_is_a_keys_error() -> None:
    assert issubclass(StrictJSONError, KeysError)


def test_utf8_bom_refused() -> None:
    assert "byte order mark" in refused(b"\xef\xbb\xbf{}")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_utf16_and_utf32_refused(encoding: str) -> None:
    message = refused('{"name": "hosts"}'.encode(encoding))
    assert "UTF-8" in message


def test_invalid_utf8_refused_with_position() -> None:
    assert "not valid UTF-8 at line 2" in refused(b'{\n"a": "\xff"}')


def test_lone_surrogate_escape_refused() -> None:
    assert "/0" in refused(b'["\\ud800"]')


def test_duplicate_key_refused_naming_key_and_path() -> None:
    message = refused(b'[{"name": "a"}, {"name": "hosts", "name": "evil"}]')
    assert message == f'{SRC}: the object at /1 has the key "name" twice'


def test_duplicate_key_nested_and_top_level() -> None:
    assert "/0/config" in refused(b'[{"config": {"x": 1, "x": 1}}]')
    assert "the top level" in refused(b'{"a": 1, "a": 2}')


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_refused(constant: bytes) -> None:
    assert constant.decode() in refused(b'{"size": ' + constant + b"}")


def test_float_overflow_refused() -> None:
    assert "too large" in refused(b"[1e400]")


def test_deep_nesting_is_clean_error_not_recursion() -> None:
    message = refused(b"[" * 100_000)
    assert "deeper than 32" in message


def test_brackets_inside_strings_do_not_count() -> None:
    assert loads(b'["' + b"[" * 100 + b'\\"{{"]', source=SRC) == ["[" * 100 + '"{{']


def test_depth_limit_is_exact() -> None:
    assert loads(b"[" * 32 + b"]" * 32, source=SRC) is not None
    refused(b"[" * 33 + b"]" * 33)


def test_long_number_refused() -> None:
    assert "longer than 32" in refused(b"[" + b"9" * 40 + b"]")
    assert "longer than 32" in refused(b"[0." + b"1" * 40 + b"]")
    assert loads(b"[" + b"9" * 32 + b"]", source=SRC) == [int("9" * 32)]


def test_oversized_input_refused() -> None:
    assert "larger than the limit of 100 bytes" in refused(b" " * 101, max_bytes=100)


def test_syntax_error_names_line_and_column() -> None:
    message = refused(b'{\n  "a": 1,\n}')
    assert "line 3, column 1" in message


@pytest.mark.parametrize("data", [b"", b"{", b"[1,]", b"{'a': 1}", b'["a\nb"]', b"[1] [2]"])
def test_malformed_refused(data: bytes) -> None:
    refused(data)


def test_load_reads_file_and_names_it(tmp_path: Path) -> None:
    p = tmp_path / "plugins.json"
    p.write_bytes(b'{"a": 1}')
    assert load(p) == {"a": 1}
    p.write_bytes(b'{"a": 1, "a": 2}')
    with pytest.raises(StrictJSONError, match=re.escape(str(p))):
        load(p)
    p.write_bytes(b" " * 50)
    with pytest.raises(StrictJSONError, match=r"^lock: is larger"):
        load(p, source="lock", max_bytes=10)


def test_load_missing_file_is_strict_json_error(tmp_path: Path) -> None:
    with pytest.raises(StrictJSONError, match="cannot be read") as info:
        load(tmp_path / "nope.json")
    assert isinstance(info.value.__cause__, FileNotFoundError)


WHERE = 'plugins.json: entry 2 ("hosts")'


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (1, bool, f'{WHERE}: field "f" must be true or false, not 1'),
        (True, int, f'{WHERE}: field "f" must be a whole number, not true'),
        ("123", int, f'{WHERE}: field "f" must be a whole number, not "123"'),
        (123.0, int, f'{WHERE}: field "f" must be a whole number, not 123.0'),
        (False, float, f'{WHERE}: field "f" must be a number, not false'),
        (None, str, f'{WHERE}: field "f" must be a string, not null'),
        ({}, list, f'{WHERE}: field "f" must be a list, not an object'),
        ([], dict, f'{WHERE}: field "f" must be an object, not a list'),
        (1, (str, list), f'{WHERE}: field "f" must be a string or a list, not 1'),
    ],
)
def test_require_exact_types_refused(value: Any, kind: Any, expected: str) -> None:
    with pytest.raises(StrictJSONError) as info:
        require({"f": value}, "f", kind, where=WHERE)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, bool), (123, int), (123, float), (1.5, float), ("x", str), ([], list), ({}, dict)],
)
def test_require_exact_types_accepted(value: Any, kind: Any) -> None:
    assert require({"f": value}, "f", kind, where=WHERE) is value


def test_require_values_from_parsed_json() -> None:
    doc = loads(b'{"privileged": 1, "size": 123.0, "n": "123", "ok": true}', source=SRC)
    for key in ("privileged", "size", "n"):
        with pytest.raises(StrictJSONError):
            require(doc, key, bool if key == "privileged" else int, where=SRC)
    assert require(doc, "ok", bool, where=SRC) is True


def test_require_missing_key() -> None:
    with pytest.raises(StrictJSONError) as info:
        require({}, "name", str, where=WHERE)
    assert str(info.value) == f'{WHERE}: field "name" is missing'


def test_optional() -> None:
    assert optional({}, "version", str, None, where=WHERE) is None
    assert optional({"version": "1.0"}, "version", str, None, where=WHERE) == "1.0"
    with pytest.raises(StrictJSONError, match="not null"):
        optional({"version": None}, "version", str, None, where=WHERE)
    assert optional({"version": None}, "version", (str, type(None)), "x", where=WHERE) is None


def test_expect_and_unsupported_kind_is_caller_bug() -> None:
    with pytest.raises(StrictJSONError, match=r"^plugins\.json: the document must be a list"):
        expect({}, list, where=SRC, what="the document")
    with pytest.raises(ValueError):
        require({"f": 1}, "f", bytes, where=WHERE)


def test_describe_value_is_short() -> None:
    assert len(describe_value("x" * 1000)) <= 40
    assert describe_value(json.loads("1")) == "1"
