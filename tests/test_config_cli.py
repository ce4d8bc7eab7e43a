"""Config a person can reach (issue 17 item 1): `pm-plugins config` lists, gets, sets and
resets the options running plugins registered, typed as each declares; a change reaches the
plugin's watch at once; values persist across host restarts; `uninstall` keeps them unless
`--purge`; static config is set the same way. A real booted host and real plugins."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.config import plain_from_text
from host.control import ControlError, request
from loader.config_values import ConfigValuesError, SavedValue, check_plain, read_values, save_value
from tests.conftest import wait_for
from tests.test_cli import Cli, publish

RULES = "plugins/allowlist/rules"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


def boot(cli: Cli) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        cli.argv("boot"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def registered() -> bool:
        done = cli("config", "--json", ok=False)
        return done.returncode == 0 and '"running": true' in done.stdout and RULES in done.stdout

    assert wait_for(registered, 20), proc.communicate()[1] if proc.poll() is not None else "slow"
    return proc


def stop(cli: Cli, proc: subprocess.Popen[str]) -> None:
    cli("stop")
    assert proc.wait(timeout=20) == 0


@pytest.fixture
def allowlist(cli: Cli, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    publish(cli, tmp_path, "allowlist", "hosts")
    cli(
        "install",
        str(tmp_path / "dist" / "allowlist-1.0.0"),
        str(tmp_path / "dist" / "hosts-1.0.0"),
    )
    proc = boot(cli)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=20)


def verdict(cli: Cli, binary: str, domain: str) -> str:
    done = cli("query", "connection", "--binary", binary, "--domain", domain)
    return done.stdout.split()[0]


def test_a_person_lists_sets_and_resets_an_option_and_the_plugin_obeys_at_once(
    cli: Cli, allowlist: subprocess.Popen[str]
) -> None:
    listed = json.loads(cli("config", "--json").stdout)
    (rules,) = [o for o in listed["options"] if o["key"] == RULES]
    assert rules["plugin"] == "allowlist" and rules["type"] == "string_array"
    assert rules["default"] == rules["value"] and rules["set"] is False
    assert rules["name"] == "Allowed connections"
    text = cli("config", "list", "--plugin", "allowlist").stdout
    assert RULES in text and "string_array" in text and "(default)" in text
    assert verdict(cli, "/usr/bin/wget", "example.net") != "accept"

    said = cli("config", "set", "allowlist/rules", "/usr/bin/wget example.net.").stdout
    assert said.strip() == f'{RULES} = ["/usr/bin/wget example.net."]'
    assert wait_for(lambda: verdict(cli, "/usr/bin/wget", "example.net") == "accept", 5)
    assert verdict(cli, "/usr/bin/curl", "example.com") != "accept"  # the default is gone
    assert json.loads(cli("config", "get", RULES, "--json").stdout)["set"] is True

    cli("config", "set", RULES, '["/usr/bin/a x.org.", "/usr/bin/b y.org."]')
    assert (
        cli("config", "get", RULES).stdout.strip() == '["/usr/bin/a x.org.", "/usr/bin/b y.org."]'
    )

    reset = cli("config", "reset", RULES).stdout
    assert reset.strip().endswith("(default)")
    assert wait_for(lambda: verdict(cli, "/usr/bin/curl", "example.com") == "accept", 5)


def test_refusals_name_the_option_and_the_type(cli: Cli, allowlist: subprocess.Popen[str]) -> None:
    unknown = cli("config", "set", "plugins/allowlist/nope", "x", ok=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "Error: no running plugin registered a config option plugins/allowlist/nope; "
        "`pm-plugins config` lists them"
    )
    bad = cli("config", "set", RULES, "[1, 2]", ok=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        f"Error: config option {RULES} takes a list of strings, not [1, 2]"
    )
    with pytest.raises(ControlError) as err:  # the host checks the type too, not only the CLI
        request(cli.home / "run" / "host.sock", "config-set", key=RULES, value="one string")
    assert str(err.value) == f'config option {RULES} takes a list of strings, not "one string"'
    assert json.loads(cli("config", "get", RULES, "--json").stdout)["set"] is False


def test_values_survive_a_restart_and_uninstall_unless_purged(
    cli: Cli, allowlist: subprocess.Popen[str], tmp_path: Path
) -> None:
    cli("config", "set", RULES, "/usr/bin/wget example.net.")
    (saved,) = read_values(cli.home / "config.json").values()
    kid = json.loads(cli("keys", "list", "--json").stdout)["trusted"][0]["key_id"]
    assert saved == SavedValue("string_array", ["/usr/bin/wget example.net."], (kid,))
    assert (cli.home / "config.json").stat().st_mode & 0o777 == 0o600
    stop(cli, allowlist)

    offline = cli("config").stdout
    assert "no host is running" in offline and "/usr/bin/wget example.net." in offline

    again = boot(cli)
    try:
        got = json.loads(cli("config", "get", RULES, "--json").stdout)
        assert got["value"] == ["/usr/bin/wget example.net."] and got["set"] is True
        assert verdict(cli, "/usr/bin/wget", "example.net") == "accept"
    finally:
        stop(cli, again)

    (cli.home / "data" / "allowlist").mkdir(parents=True, exist_ok=True)
    cli("uninstall", "allowlist")
    assert RULES in read_values(cli.home / "config.json")  # kept for a reinstall
    cli("install", str(tmp_path / "dist" / "allowlist-1.0.0"))
    purged = cli("uninstall", "allowlist", "--purge").stdout
    assert f"removed config value {RULES}" in purged and "removed data folder" in purged
    assert read_values(cli.home / "config.json") == {}
    assert not (cli.home / "data" / "allowlist").exists()


def test_static_config_is_set_and_unset_in_plugins_json(cli: Cli, tmp_path: Path) -> None:
    publish(cli, tmp_path, "hosts")
    cli("install", str(tmp_path / "dist" / "hosts-1.0.0"))
    said = cli("config", "static", "hosts", "path", "/etc/hosts").stdout
    assert said.strip() == (
        'static config of hosts: path = "/etc/hosts"; it applies when hosts next starts'
    )
    cli("config", "static", "hosts", "limit", "3")
    (entry,) = json.loads((cli.home / "plugins.json").read_text())
    assert entry["config"] == {"path": "/etc/hosts", "limit": 3}
    cli("config", "static", "hosts", "limit", "--unset")
    (entry,) = json.loads((cli.home / "plugins.json").read_text())
    assert entry["config"] == {"path": "/etc/hosts"}
    cli("config", "static", "hosts", "nothing", "null")  # JSON null is a value, not --unset
    (entry,) = json.loads((cli.home / "plugins.json").read_text())
    assert entry["config"] == {"path": "/etc/hosts", "nothing": None}
    missing = cli("config", "static", "nope", "path", "x", ok=False)
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "Error: plugin nope is not in plugins.json"
    )
    usage = cli("config", "static", "hosts", "path", ok=False)
    assert usage.returncode == 2 and "give a VALUE, or --unset" in usage.stderr


@pytest.mark.parametrize(
    ("words", "type_", "plain"),
    [
        (("true",), "bool", True),
        (("Off",), "bool", False),
        (("42",), "int", 42),
        (("-7",), "int", -7),
        (("a", "b c"), "string_array", ["a", "b c"]),
        (('["x"]',), "string_array", ["x"]),
        (("hello world",), "string", "hello world"),
        (("12",), "any", 12),
        (("plain words",), "any", "plain words"),
    ],
)
def test_words_become_the_options_type(words: tuple[str, ...], type_: str, plain: object) -> None:
    assert plain_from_text(words, type_, "k") == plain


@pytest.mark.parametrize(
    ("words", "type_", "said"),
    [
        (("maybe",), "bool", "config option k takes true or false, not 'maybe'"),
        (("4.5",), "int", "config option k takes a whole number, not '4.5'"),
        (("a", "b"), "int", "config option k takes one value, not 2"),
        (("99999999999999999999",), "int", "config option k takes a whole number, not "),
    ],
)
def test_words_that_do_not_fit_are_refused(words: tuple[str, ...], type_: str, said: str) -> None:
    with pytest.raises(ConfigValuesError) as err:
        plain_from_text(words, type_, "k")
    assert str(err.value).startswith(said)


def test_the_saved_file_refuses_a_value_of_the_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    save_value(path, "plugins/a/n", SavedValue("int", 3))
    assert read_values(path) == {"plugins/a/n": SavedValue("int", 3)}
    with pytest.raises(ConfigValuesError):
        check_plain(True, "int", "plugins/a/n")  # a bool is not a whole number
    doc = json.loads(path.read_text())
    doc["values"]["plugins/a/n"]["value"] = "three"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigValuesError) as err:
        read_values(path)
    assert str(err.value) == 'config option plugins/a/n takes a whole number, not "three"'
