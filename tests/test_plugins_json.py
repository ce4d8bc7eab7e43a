"""plugins.json: the PR's format, strict input rules, enabled/disableAutostart, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loader.errors import LoaderError
from loader.plugins_json import (
    PluginEntry,
    PluginsFileError,
    dumps_plugins_json,
    parse_plugins_json,
    read_plugins_json,
    write_plugins_json,
)


def doc(*entries: object) -> bytes:
    return json.dumps(list(entries)).encode()


def refusal(data: bytes, source: str = "plugins.json") -> str:
    with pytest.raises(PluginsFileError) as info:
        parse_plugins_json(data, source=source)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(source)
    return message


HOSTS = {"name": "hosts", "types": ["resolver"]}


def test_full_entry() -> None:
    data = doc(
        {
            "name": "hosts",
            "types": ["resolver", "base"],
            "config": {"file": "/etc/hosts", "ttl": 30, "list": [1, 2.5, None, True]},
            "privileged": True,
            "disableAutostart": False,
            "version": "1.2.0",
            "enabled": True,
        }
    )
    [entry] = parse_plugins_json(data)
    assert entry == PluginEntry(
        name="hosts",
        types=("resolver", "base"),
        config=b'{"file":"/etc/hosts","ttl":30,"list":[1,2.5,null,true]}',
        privileged=True,
        disable_autostart=False,
        version="1.2.0",
    )
    assert entry.enabled


def test_minimal_entry_defaults_like_go_omitempty() -> None:
    [entry] = parse_plugins_json(doc({"name": "hosts"}))
    assert entry == PluginEntry(name="hosts")
    assert entry.types == ()
    assert entry.config == b""
    assert not entry.privileged and not entry.disable_autostart and entry.version is None


def test_empty_array() -> None:
    assert parse_plugins_json(b"[]") == []


@pytest.mark.parametrize("config", [None, "absent"])
def test_config_null_or_absent_is_empty(config: object) -> None:
    entry: dict[str, object] = {"name": "hosts"}
    if config != "absent":
        entry["config"] = config
    assert parse_plugins_json(doc(entry))[0].config == b""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{ "b" : 1 ,\n "a" : [ 1 , 2 ] }', b'{"b":1,"a":[1,2]}'),  # key order kept
        (b'"text"', b'"text"'),
        (b"0", b"0"),
        (b"false", b"false"),
        ('{"ä": "ü"}'.encode(), '{"ä":"ü"}'.encode()),
    ],
)
def test_config_reserialized_compactly(raw: bytes, expected: bytes) -> None:
    data = b'[{"name": "hosts", "config": ' + raw + b"}]"
    assert parse_plugins_json(data)[0].config == expected


@pytest.mark.parametrize(
    ("fields", "disabled"),
    [
        ({}, False),
        ({"disableAutostart": True}, True),
        ({"disableAutostart": False}, False),
        ({"enabled": True}, False),
        ({"enabled": False}, True),
        ({"enabled": True, "disableAutostart": False}, False),
        ({"enabled": False, "disableAutostart": True}, True),
    ],
)
def test_enabled_is_negation_of_disable_autostart(fields: dict[str, bool], disabled: bool) -> None:
    [entry] = parse_plugins_json(doc({"name": "hosts", **fields}))
    assert entry.disable_autostart is disabled
    assert entry.enabled is not disabled


@pytest.mark.parametrize(
    "fields",
    [{"enabled": True, "disableAutostart": True}, {"enabled": False, "disableAutostart": False}],
)
def test_contradicting_enabled_and_disable_autostart_refused(fields: dict[str, bool]) -> None:
    message = refusal(doc({"name": "hosts", **fields}))
    assert 'entry 1 ("hosts")' in message
    assert '"enabled"' in message and '"disableAutostart"' in message


OK = {"name": "ok"}


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        # not JSON, not strict JSON
        (b"", ["not valid JSON"]),
        (b"[{", ["not valid JSON"]),
        (b"\xef\xbb\xbf[]", ["byte order mark"]),
        ("[]".encode("utf-16"), ["byte order mark"]),
        ("[]".encode("utf-16-le"), ["NUL"]),
        (b'[{"name": "\xff"}]', ["UTF-8"]),
        (b'[{"name": "hosts", "config": NaN}]', ["NaN"]),
        (b'[{"name": "hosts", "config": Infinity}]', ["Infinity"]),
        (b'[{"name": "hosts", "config": ' + b"[" * 40 + b"]" * 40 + b"}]", ["deeper"]),
        (b'[{"name": "hosts", "config": 1' + b"0" * 40 + b"}]", ["longer than"]),
        # top level
        (b'{"name": "hosts"}', ["top level", "list"]),
        (b"null", ["top level", "list"]),
        # entry not an object
        (doc(OK, ["hosts"]), ["entry 2", "object"]),
        (doc(OK, "hosts"), ["entry 2", "object"]),
        (doc(OK, None), ["entry 2", "object"]),
        # name
        (doc(OK, {"types": ["resolver"]}), ["entry 2", '"name"', "missing"]),
        (doc(OK, {"name": 7}), ["entry 2", '"name"', "string"]),
        (doc(OK, {"name": None}), ["entry 2", '"name"', "string"]),
        (doc(OK, {"name": "../x"}), ["entry 2", '"name"', '"../x"', "plain name"]),
        (doc(OK, {"name": "Hosts"}), ["entry 2", '"name"', '"Hosts"']),
        (doc(OK, {"name": "a b"}), ["entry 2", '"name"', '"a b"']),
        (doc(OK, {"name": "x\n"}), ["entry 2", '"name"', '"x\\n"']),
        (doc(OK, {"name": ""}), ["entry 2", '"name"']),
        (doc(OK, {"name": "-x"}), ["entry 2", '"name"']),
        (doc(OK, {"name": "_x"}), ["entry 2", '"name"']),
        (doc(OK, {"name": "x" * 65}), ["entry 2", '"name"']),
        (doc(OK, {"name": "x/y"}), ["entry 2", '"name"']),
        (doc(OK, {"name": "h\u0131sts"}), ["entry 2", '"name"']),
        (doc(OK, {"name": "\uff48osts"}), ["entry 2", '"name"']),
        # types
        (doc(OK, {**HOSTS, "types": "resolver"}), ['entry 2 ("hosts")', '"types"', "list"]),
        (doc(OK, {**HOSTS, "types": None}), ['entry 2 ("hosts")', '"types"', "list"]),
        (doc(OK, {**HOSTS, "types": [1]}), ['entry 2 ("hosts")', 'item 1 of field "types"']),
        (doc(OK, {**HOSTS, "types": ["resolver", ["x"]]}), ["item 2", '"types"', "string"]),
        (doc(OK, {**HOSTS, "types": ["firewall"]}), ['entry 2 ("hosts")', "unknown", '"firewall"']),
        (doc(OK, {**HOSTS, "types": ["Resolver"]}), ['"types"', "unknown", '"Resolver"']),
        (doc(OK, {**HOSTS, "types": ["resolver", "resolver"]}), ['"types"', "twice"]),
        # duplicate names across entries
        (doc(OK, HOSTS, HOSTS), ['entry 3 ("hosts")', '"name"', "entry 2"]),
        # booleans exactly
        (
            doc(OK, {**HOSTS, "privileged": 1}),
            ['entry 2 ("hosts")', '"privileged"', "true or false"],
        ),
        (doc(OK, {**HOSTS, "privileged": "true"}), ['"privileged"', "true or false"]),
        (doc(OK, {**HOSTS, "privileged": None}), ['"privileged"', "true or false"]),
        (doc(OK, {**HOSTS, "disableAutostart": 0}), ['entry 2 ("hosts")', '"disableAutostart"']),
        (doc(OK, {**HOSTS, "disableAutostart": "false"}), ['"disableAutostart"']),
        (doc(OK, {**HOSTS, "enabled": 1}), ['entry 2 ("hosts")', '"enabled"', "true or false"]),
        (doc(OK, {**HOSTS, "enabled": None}), ['"enabled"', "true or false"]),
        # version
        (
            doc(OK, {**HOSTS, "version": "not a version"}),
            ['entry 2 ("hosts")', '"version"', "PEP 440"],
        ),
        (doc(OK, {**HOSTS, "version": "1.0 "}), ['"version"', "PEP 440"]),
        (doc(OK, {**HOSTS, "version": "1.0\n"}), ['"version"', "PEP 440"]),
        (doc(OK, {**HOSTS, "version": ""}), ['"version"', "PEP 440"]),
        (doc(OK, {**HOSTS, "version": "1" * 65}), ['"version"', "PEP 440"]),
        (doc(OK, {**HOSTS, "version": 1}), ['"version"', "string"]),
        (doc(OK, {**HOSTS, "version": 1.2}), ['"version"', "string"]),
        (doc(OK, {**HOSTS, "version": None}), ['"version"', "string"]),
        # unknown fields
        (doc(OK, {**HOSTS, "path": "/bin/sh"}), ['entry 2 ("hosts")', "unknown field", '"path"']),
        (doc(OK, {**HOSTS, "Name": "x", "b": 1}), ["unknown fields", '"Name"', '"b"']),
    ],
)
def test_refusals(data: bytes, fragments: list[str]) -> None:
    message = refusal(data)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_duplicate_json_keys_refused() -> None:
    data = b'[{"name": "hosts", "privileged": false, "privileged": true}]'
    message = refusal(data)
    assert '"privileged" twice' in message
    assert "/0" in message


def test_duplicate_name_key_refused() -> None:
    message = refusal(b'[{"name": "hosts", "name": "evil"}]')
    assert '"name" twice' in message


def test_error_is_a_loader_error_and_keeps_the_cause() -> None:
    with pytest.raises(LoaderError) as info:
        parse_plugins_json(b"[1]", source="/home/u/plugins.json")
    assert str(info.value).startswith("/home/u/plugins.json: entry 1")
    assert info.value.__cause__ is not None


def test_index_is_one_based_and_name_is_shown() -> None:
    message = refusal(doc({"name": "a"}, {"name": "b"}, {"name": "hosts", "privileged": 1}))
    assert 'entry 3 ("hosts")' in message
    assert "entry 2" not in message


def test_pep440_versions_accepted_and_kept_verbatim() -> None:
    for version in ["1", "1.2.0", "1.0rc1", "1.0.0-rc.1", "2!1.0.post3.dev4", "1.0+local.7"]:
        [entry] = parse_plugins_json(doc({"name": "hosts", "version": version}))
        assert entry.version == version


def test_all_known_types_accepted() -> None:
    types = ["base", "decider", "reporter", "resolver", "hook"]
    assert parse_plugins_json(doc({"name": "x", "types": types}))[0].types == tuple(types)


def test_names_accepted() -> None:
    names = ["a", "0", "hosts", "fail2lock", "my_plugin", "my-plugin", "x" * 64]
    entries = parse_plugins_json(doc(*({"name": n} for n in names)))
    assert [e.name for e in entries] == names


# ---- reading and writing files -------------------------------------------------------


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_plugins_json(tmp_path / "plugins.json") == []


def test_read_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    path.write_bytes(b'[{"name": "hosts", "types": ["nope"]}]')
    with pytest.raises(PluginsFileError) as info:
        read_plugins_json(path)
    assert str(info.value).startswith(f'{path}: entry 1 ("hosts")')


def test_unreadable_path_refused(tmp_path: Path) -> None:
    with pytest.raises(PluginsFileError, match="is not a regular file"):
        read_plugins_json(tmp_path)  # a directory


def test_a_fifo_is_refused_at_once_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "plugins.json"
    os.mkfifo(fifo)
    with pytest.raises(PluginsFileError, match="is not a regular file"):
        read_plugins_json(fifo)


def test_oversize_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    path.write_bytes(b'[{"name": "hosts", "config": "' + b"x" * 1_100_000 + b'"}]')
    with pytest.raises(PluginsFileError, match="larger than"):
        read_plugins_json(path)


ENTRIES = [
    PluginEntry(
        name="hosts",
        types=("resolver",),
        config='{"file":"/etc/hosts","names":["ä"]}'.encode(),
        privileged=False,
        disable_autostart=False,
        version="1.2.0",
    ),
    PluginEntry(name="allowlist", types=("decider", "hook"), privileged=True),
    PluginEntry(name="history", types=("reporter",), disable_autostart=True, config=b"[1,2]"),
]


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    write_plugins_json(path, ENTRIES)
    assert read_plugins_json(path) == ENTRIES
    assert [p.name for p in tmp_path.iterdir()] == ["plugins.json"]  # no temp file left


def test_written_format_is_the_prs(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    write_plugins_json(path, ENTRIES)
    written = json.loads(path.read_bytes())
    assert written[0] == {
        "name": "hosts",
        "types": ["resolver"],
        "config": {"file": "/etc/hosts", "names": ["ä"]},
        "privileged": False,
        "disableAutostart": False,
        "version": "1.2.0",
    }
    assert written[1] == {
        "name": "allowlist",
        "types": ["decider", "hook"],
        "privileged": True,
        "disableAutostart": False,
    }
    assert written[2]["disableAutostart"] is True
    assert all("enabled" not in e for e in written)
    assert path.read_bytes().endswith(b"\n")


def test_enabled_is_read_then_written_as_disable_autostart(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    path.write_bytes(doc({"name": "hosts", "enabled": False}))
    write_plugins_json(path, read_plugins_json(path))
    assert json.loads(path.read_bytes()) == [
        {"name": "hosts", "types": [], "privileged": False, "disableAutostart": True}
    ]


def test_write_replaces_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    path.write_bytes(b"[]")
    os.chmod(path, 0o600)
    write_plugins_json(path, ENTRIES[:1])
    assert read_plugins_json(path) == ENTRIES[:1]
    assert path.stat().st_mode & 0o777 == 0o600


def test_new_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    write_plugins_json(path, [])
    assert path.read_bytes() == b"[]\n"
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "entries",
    [
        [PluginEntry(name="../x")],
        [PluginEntry(name="hosts", types=("firewall",))],
        [PluginEntry(name="hosts"), PluginEntry(name="hosts")],
        [PluginEntry(name="hosts", version="nope")],
        [PluginEntry(name="hosts", config=b"{not json")],
        [PluginEntry(name="hosts", config=b'{"a":1,"a":2}')],
    ],
)
def test_write_refuses_what_it_could_not_read(tmp_path: Path, entries: list[PluginEntry]) -> None:
    path = tmp_path / "plugins.json"
    path.write_bytes(b"[]")
    with pytest.raises(ValueError):
        write_plugins_json(path, entries)
    assert path.read_bytes() == b"[]"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["plugins.json"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "plugins.json"
    path.write_bytes(b"[]")

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_plugins_json(path, ENTRIES)
    assert path.read_bytes() == b"[]"
    assert [p.name for p in tmp_path.iterdir()] == ["plugins.json"]


def test_dumps_matches_write(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    write_plugins_json(path, ENTRIES)
    assert path.read_bytes() == dumps_plugins_json(ENTRIES)
