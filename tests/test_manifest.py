"""The signed manifest payload: strict parsing, every refusal, lossless canonical round trip."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from loader.errors import LoaderError
from loader.manifest import (
    Artifact,
    Manifest,
    ManifestError,
    Requires,
    format_created,
    manifest_to_bytes,
    parse_manifest,
)

SHA = "0123456789abcdef" * 4
SOURCE = "plugins/hosts/1.2.0/manifest.dsse.json"


def good() -> dict[str, Any]:
    return {
        "name": "hosts",
        "version": "1.2.0",
        "publisher": "Safing ICS Technologies",
        "description": "Answers DNS questions from a hosts file.\nSecond line.",
        "types": ["resolver", "hook"],
        "requires": {"host": ["firewall", "resolver"], "plugins": {"allowlist": ">=1,<2"}},
        "platform": "linux-x86_64",
        "artifact": {"filename": "hosts-1.2.0.pyz", "sha256": SHA, "size": 1234},
        "created": "2026-11-23T09:00:00Z",
    }


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def parse(obj: Any) -> Manifest:
    return parse_manifest(encode(obj), source=SOURCE)


def test_parse_good() -> None:
    m = parse(good())
    assert m.name == "hosts"
    assert m.version == "1.2.0" and m.parsed_version == Version("1.2.0")
    assert m.publisher == "Safing ICS Technologies"
    assert m.description.endswith("Second line.")
    assert m.types == ("resolver", "hook")
    assert m.requires == Requires(
        host_modules=("firewall", "resolver"), plugins=(("allowlist", SpecifierSet(">=1,<2")),)
    )
    assert m.platform == "linux-x86_64"
    assert m.artifact == Artifact(filename="hosts-1.2.0.pyz", sha256=SHA, size=1234)
    assert m.created == "2026-11-23T09:00:00Z"
    assert m.created_at == datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
    assert Version("1.5") in dict(m.requires.plugins)["allowlist"]
    assert Version("2.0") not in dict(m.requires.plugins)["allowlist"]


def test_requires_optional_and_its_parts_optional() -> None:
    obj = good()
    del obj["requires"]
    assert parse(obj).requires == Requires()
    obj["requires"] = {}
    assert parse(obj).requires == Requires()
    obj["requires"] = {"host": ["firewall"]}
    assert parse(obj).requires == Requires(host_modules=("firewall",))


def test_platform_any_and_zero_size() -> None:
    obj = good()
    obj["platform"] = "any"
    obj["artifact"]["size"] = 0
    m = parse(obj)
    assert m.platform == "any" and m.artifact.size == 0


def test_round_trip_bytes_and_back() -> None:
    m = parse(good())
    data = manifest_to_bytes(m)
    assert parse_manifest(data, source="x") == m
    assert manifest_to_bytes(parse_manifest(data, source="x")) == data


def test_canonical_form() -> None:
    obj = good()
    obj["description"] = "Zürich résolveur ✓"
    data = manifest_to_bytes(parse(obj))
    assert "Zürich résolveur ✓".encode() in data  # UTF-8, not \u escapes
    decoded = json.loads(data)
    assert list(decoded) == sorted(decoded)
    assert list(decoded["artifact"]) == sorted(decoded["artifact"])
    assert (
        data
        == json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_constructed_manifest_round_trips() -> None:
    m = Manifest(
        name="allowlist",
        version="2.0.0rc1",
        publisher="me",
        description="",
        types=("decider",),
        requires=Requires(
            host_modules=("firewall",),
            plugins=(("zeta", SpecifierSet("==1.*")), ("alpha", SpecifierSet(""))),
        ),
        platform="any",
        artifact=Artifact(filename="allowlist", sha256=SHA, size=5),
        created=format_created(
            datetime(2026, 1, 2, 4, 4, 5, 999, tzinfo=timezone(timedelta(hours=1)))
        ),
    )
    assert m.created == "2026-01-02T03:04:05Z"
    assert [n for n, _ in m.requires.plugins] == ["alpha", "zeta"]  # kept sorted
    data = manifest_to_bytes(m)
    assert parse_manifest(data, source="x") == m
    assert json.loads(data)["requires"]["plugins"] == {"alpha": "", "zeta": "==1.*"}


def test_manifest_to_bytes_refuses_an_invalid_manifest() -> None:
    m = parse(good())
    bad = Manifest(
        name="../evil",
        version=m.version,
        publisher=m.publisher,
        description=m.description,
        types=m.types,
        requires=m.requires,
        platform=m.platform,
        artifact=m.artifact,
        created=m.created,
    )
    with pytest.raises(ManifestError, match='"name"'):
        manifest_to_bytes(bad)


def test_format_created_wants_aware() -> None:
    with pytest.raises(ValueError):
        format_created(datetime(2026, 1, 1))


def with_(path: str, value: Any) -> dict[str, Any]:
    """good() with the field at dotted ``path`` set to ``value`` (or deleted for DELETE)."""
    obj = copy.deepcopy(good())
    *parents, last = path.split(".")
    target = obj
    for p in parents:
        target = target[p]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return obj


DELETE = object()


@pytest.mark.parametrize(
    ("obj", "fragments"),
    [
        # top level
        ([], ["the manifest", "object"]),
        ("hosts", ["the manifest", "object"]),
        ({**good(), "extra": 1}, ["unknown field", '"extra"']),
        ({**good(), "Name": "x", "path": "/"}, ["unknown fields", '"Name"', '"path"']),
        # missing required fields
        *[
            (with_(f, DELETE), [f'"{f}"', "missing"])
            for f in [
                "name",
                "version",
                "publisher",
                "description",
                "types",
                "platform",
                "artifact",
                "created",
            ]
        ],
        # name
        (with_("name", "../x"), ['"name"', '"../x"', "plain name"]),
        (with_("name", "Hosts"), ['"name"', '"Hosts"']),
        (with_("name", "a b"), ['"name"', '"a b"']),
        (with_("name", "x\n"), ['"name"', '"x\\n"']),
        (with_("name", ""), ['"name"']),
        (with_("name", 1), ['"name"', "string"]),
        # version
        (with_("version", "one"), ['"version"', "PEP 440"]),
        (with_("version", "1.0\n"), ['"version"', "PEP 440"]),
        (with_("version", " 1.0"), ['"version"', "PEP 440"]),
        (with_("version", 1), ['"version"', "string"]),
        (with_("version", 1.0), ['"version"', "string"]),
        # publisher, description
        (with_("publisher", ""), ['"publisher"', "empty"]),
        (with_("publisher", "  "), ['"publisher"', "empty"]),
        (with_("publisher", "a\nb"), ['"publisher"', "control character"]),
        (with_("publisher", "x" * 257), ['"publisher"', "longer"]),
        (with_("publisher", None), ['"publisher"', "string"]),
        (with_("description", "\x1b[31mred"), ['"description"', "control character"]),
        (with_("description", "x" * 4097), ['"description"', "longer"]),
        (with_("description", ["x"]), ['"description"', "string"]),
        # types
        (with_("types", []), ['"types"', "empty"]),
        (with_("types", "resolver"), ['"types"', "list"]),
        (with_("types", [True]), ['item 1 of field "types"', "string"]),
        (with_("types", ["resolver", "firewall"]), ['"types"', "unknown", '"firewall"']),
        (with_("types", ["hook", "hook"]), ['"types"', "twice"]),
        # requires
        (with_("requires", []), ['"requires"', "object"]),
        (with_("requires", None), ['"requires"', "object"]),
        (with_("requires.extra", 1), ['"requires"', "unknown field", '"extra"']),
        (with_("requires.host", "firewall"), ['"requires.host"', "list"]),
        (with_("requires.host", [1]), ['item 1 of field "requires.host"', "string"]),
        (with_("requires.host", ["Firewall"]), ['item 1 of field "requires.host"', '"Firewall"']),
        (with_("requires.host", ["fw", "../x"]), ['item 2 of field "requires.host"', '"../x"']),
        (with_("requires.host", ["fw", "fw"]), ['"requires.host"', "twice"]),
        (with_("requires.plugins", [">=1"]), ['"requires.plugins"', "object"]),
        (with_("requires.plugins", {"../x": ">=1"}), ['"requires.plugins"', '"../x"']),
        (with_("requires.plugins", {"allowlist": 1}), ['"requires.plugins.allowlist"', "string"]),
        (
            with_("requires.plugins", {"allowlist": "banana"}),
            ['"requires.plugins.allowlist"', "specifier"],
        ),
        (
            with_("requires.plugins", {"allowlist": ">=1,"}),
            ['"requires.plugins.allowlist"', "specifier"],
        ),
        (
            with_("requires.plugins", {"allowlist": ",>=1"}),
            ['"requires.plugins.allowlist"', "specifier"],
        ),
        (
            with_("requires.plugins", {"allowlist": ">=1\n"}),
            ['"requires.plugins.allowlist"', "specifier"],
        ),
        (with_("requires.plugins", {"hosts": ">=1"}), ['"requires.plugins.hosts"', "itself"]),
        # platform
        (with_("platform", "Linux-x86_64"), ['"platform"', '"Linux-x86_64"']),
        (with_("platform", "linux"), ['"platform"']),
        (with_("platform", "any\n"), ['"platform"']),
        (with_("platform", "linux-x86_64-extra"), ['"platform"']),
        (with_("platform", ""), ['"platform"']),
        (with_("platform", None), ['"platform"', "string"]),
        # artifact
        (with_("artifact", "hosts.pyz"), ['"artifact"', "object"]),
        (with_("artifact.extra", 1), ['"artifact"', "unknown field", '"extra"']),
        *[
            (with_(f"artifact.{f}", DELETE), [f'"artifact.{f}"', "missing"])
            for f in ["filename", "sha256", "size"]
        ],
        (with_("artifact.filename", "../hosts"), ['"artifact.filename"', "plain file name"]),
        (with_("artifact.filename", "a/b"), ['"artifact.filename"']),
        (with_("artifact.filename", "."), ['"artifact.filename"']),
        (with_("artifact.filename", ".."), ['"artifact.filename"']),
        (with_("artifact.filename", ""), ['"artifact.filename"']),
        (with_("artifact.filename", "a b"), ['"artifact.filename"']),
        (with_("artifact.filename", "x\n"), ['"artifact.filename"']),
        (with_("artifact.filename", "x" * 129), ['"artifact.filename"']),
        (with_("artifact.filename", 7), ['"artifact.filename"', "string"]),
        (with_("artifact.sha256", SHA.upper()), ['"artifact.sha256"', "lowercase hex"]),
        (with_("artifact.sha256", SHA[:-1]), ['"artifact.sha256"']),
        (with_("artifact.sha256", SHA + "0"), ['"artifact.sha256"']),
        (with_("artifact.sha256", SHA[:-1] + "g"), ['"artifact.sha256"']),
        (with_("artifact.sha256", SHA + "\n"), ['"artifact.sha256"']),
        (with_("artifact.size", -1), ['"artifact.size"', "negative"]),
        (with_("artifact.size", 12.0), ['"artifact.size"', "whole number"]),
        (with_("artifact.size", "12"), ['"artifact.size"', "whole number"]),
        (with_("artifact.size", True), ['"artifact.size"', "whole number"]),
        (with_("artifact.size", None), ['"artifact.size"', "whole number"]),
        # created
        (with_("created", "2026-11-23T09:00:00"), ['"created"', "RFC 3339"]),
        (with_("created", "2026-11-23T09:00:00+00:00"), ['"created"', "RFC 3339"]),
        (with_("created", "2026-11-23 09:00:00Z"), ['"created"']),
        (with_("created", "2026-13-01T09:00:00Z"), ['"created"']),
        (with_("created", "2026-02-30T09:00:00Z"), ['"created"']),
        (with_("created", "2026-11-23T25:00:00Z"), ['"created"']),
        (with_("created", "2026-11-23T09:00:00Z\n"), ['"created"']),
        (with_("created", "\u0662026-11-23T09:00:00Z"), ['"created"']),
        (with_("created", 1700000000), ['"created"', "string"]),
    ],
)
def test_refusals(obj: Any, fragments: list[str]) -> None:
    with pytest.raises(ManifestError) as info:
        parse(obj)
    message = str(info.value)
    assert message.startswith(SOURCE + ": "), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        ("{}".encode("utf-16"), "byte order mark"),
        (b'{"name": "hosts", "name": "evil"}', '"name" twice'),
        (b'{"artifact": {"size": NaN}}', "NaN"),
        (b"[" * 100 + b"]" * 100, "deeper"),
    ],
)
def test_strict_json_refusals(data: bytes, fragment: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, source=SOURCE)
    assert str(info.value).startswith(SOURCE)
    assert fragment in str(info.value)
    assert isinstance(info.value, LoaderError)
    assert info.value.__cause__ is not None


def test_duplicate_key_in_nested_object_refused() -> None:
    data = encode(good()).replace(b'"size": 1234', b'"size": 1234, "size": 1')
    with pytest.raises(ManifestError, match='"size" twice'):
        parse_manifest(data, source=SOURCE)
