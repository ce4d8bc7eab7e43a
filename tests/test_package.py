"""`plugin.toml`: read with the same field rules as every other file (loader.fields)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_client.package import PackageError, read_source
from tests.conftest import EXAMPLES

GOOD = """\
name = "demo"
version = "1.0.0"
description = "a demo"
publisher = "tests"
types = ["decider"]
executable = "plugin"
[requires]
host = ["firewall"]
plugins = {hosts = ">=1"}
"""


def source(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "plugin.toml").write_text(toml)
    (tmp_path / "plugin").write_bytes((EXAMPLES / "allowlist" / "plugin").read_bytes())
    return tmp_path


def refusal(tmp_path: Path, toml: str) -> str:
    with pytest.raises(PackageError) as info:
        read_source(source(tmp_path, toml))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "plugin.toml") in message
    return message


def test_a_good_plugin_toml_reads(tmp_path: Path) -> None:
    manifest = read_source(source(tmp_path, GOOD)).manifest
    assert (manifest.name, str(manifest.version), manifest.types) == ("demo", "1.0.0", ("decider",))
    assert manifest.platform == "any"
    assert manifest.requires.host_modules == ("firewall",)
    assert [(n, str(s)) for n, s in manifest.requires.plugins] == [("hosts", ">=1")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('version = "1.0.0"', "version = 1"), 'field "version" must be a string, not 1'),
        (('types = ["decider"]', 'types = "decider"'), 'field "types" must be a list, not'),
        (('types = ["decider"]', "types = [1]"), 'item 1 of field "types" must be a string'),
        (('name = "demo"', 'name = "demo"\ncolour = "red"'), 'unknown field "colour"'),
        (("[requires]", "platform = 7\n[requires]"), 'field "platform" must be a string, not 7'),
        (('plugins = {hosts = ">=1"}', "plugins = {hosts = 1}"), '"requires.plugins.hosts"'),
        (('plugins = {hosts = ">=1"}', 'plugins = {hosts = ">=1"}\nextra = []'), '"extra"'),
        (('plugins = {hosts = ">=1"}', 'plugins = {hosts = "=>1"}'), "bad specifier"),
    ],
)
def test_a_bad_field_is_one_sentence_naming_file_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    assert change[0] in GOOD
    assert expected in refusal(tmp_path, GOOD.replace(change[0], change[1], 1))


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    assert 'field "publisher" is missing' in refusal(
        tmp_path, GOOD.replace('publisher = "tests"\n', "")
    )
