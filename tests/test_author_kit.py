"""The plugin author's kit (issue 15): `pm-plugins new` writes a plugin that passes its own
test, packages and installs as written; names the installer would refuse are refused up
front; a signed build of the version a dev build has says how to replace it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pm_plugin.scaffold import TYPES
from tests.conftest import wait_for
from tests.test_cli import Cli, publish


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


def test_every_type_scaffolds_a_plugin_that_tests_packages_and_installs(
    cli: Cli, tmp_path: Path
) -> None:
    publish(cli, tmp_path)
    for type_ in TYPES:
        said = cli("new", f"my-{type_}", "--type", type_, "--dir", str(tmp_path / type_)).stdout
        assert f"wrote {tmp_path / type_ / 'plugin.toml'}" in said
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert f"{len(TYPES)} passed" in tested.stdout
    for type_ in TYPES:
        cli("package", str(tmp_path / type_), "--key", "me", "--out", str(tmp_path / "dist"))
    cli("install", *(str(tmp_path / "dist" / f"my-{t}-0.1.0") for t in TYPES))
    listed = json.loads(cli("list", "--json").stdout)
    assert sorted(p["name"] for p in listed) == sorted(f"my-{t}" for t in TYPES)
    assert all(p["status"] == "verified" for p in listed), listed


def test_a_dev_build_installs_from_its_folder_unsigned(cli: Cli, tmp_path: Path) -> None:
    cli("new", "mine", "--type", "decider", "--dir", str(tmp_path / "mine"))
    cli("--dev-mode", "install", str(tmp_path / "mine"))
    (entry,) = json.loads((cli.home / "plugins.json").read_text())
    assert entry["name"] == "mine"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("firewall", "firewall is the name of a host module, which no plugin may take"),
        ("Bad Name", "'Bad Name' is not a plugin name"),
    ],
)
def test_new_refuses_a_name_the_installer_would(
    cli: Cli, tmp_path: Path, name: str, said: str
) -> None:
    done = cli("new", name, "--type", "decider", "--dir", str(tmp_path / "x"), ok=False)
    assert done.returncode == 1 and said in done.stderr
    assert not (tmp_path / "x").exists()


def test_new_never_writes_over_a_folder(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    done = cli("new", "taken", "--type", "hook", "--dir", str(tmp_path / "taken"), ok=False)
    assert done.returncode == 1 and "already exists and is not empty" in done.stderr
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]


def test_package_refuses_a_host_modules_name(cli: Cli, tmp_path: Path) -> None:
    publish(cli, tmp_path)
    cli("new", "fine", "--type", "decider", "--dir", str(tmp_path / "src"))
    toml = tmp_path / "src" / "plugin.toml"
    toml.write_text(toml.read_text().replace('name = "fine"', 'name = "firewall"'))
    done = cli(
        "package", str(tmp_path / "src"), "--key", "me", "--out", str(tmp_path / "d"), ok=False
    )
    assert done.returncode == 1
    assert "firewall is the name of a host module, which no plugin may take" in done.stderr
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_a_signed_build_says_how_to_replace_the_dev_build_of_its_version(
    cli: Cli, tmp_path: Path
) -> None:
    publish(cli, tmp_path)
    cli("new", "mine", "--type", "decider", "--dir", str(tmp_path / "mine"))
    cli("--dev-mode", "install", str(tmp_path / "mine"))
    source = tmp_path / "mine" / "plugin"
    source.write_text(source.read_text() + "\n# signed now\n")
    cli("package", str(tmp_path / "mine"), "--key", "me", "--out", str(tmp_path / "dist"))
    done = cli("install", str(tmp_path / "dist" / "mine-0.1.0"), ok=False)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: mine 0.1.0 is installed as an unsigned dev build; a signed release of the same "
        "version does not replace it: run `pm-plugins uninstall mine`, then install the signed "
        "package"
    )
    cli("uninstall", "mine")
    cli("install", str(tmp_path / "dist" / "mine-0.1.0"))


def test_dev_runs_a_source_folder_and_runs_it_again_on_every_change(
    cli: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "hello"
    cli("new", "hello", "--type", "decider", "--dir", str(src))
    booted = subprocess.Popen(
        cli.argv("--dev-mode", "boot"), env=cli.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    dev: subprocess.Popen[str] | None = None
    try:
        assert wait_for(lambda: cli("status", ok=False).returncode == 0, timeout=20)
        dev = subprocess.Popen(
            cli.argv("dev", str(src), "--interval", "0.1"), env=cli.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert dev.stdout is not None
        assert dev.stdout.readline().strip() == "[1] hello 0.1.0 (dev build): running"
        assert query(cli, "ads.example") == "block"
        assert query(cli, "tracker.example") == "accept"  # no decider decided: the default
        plugin = src / "plugin"
        plugin.write_text(plugin.read_text().replace('"ads.example."', '"tracker.example."'))
        assert dev.stdout.readline().strip() == "[2] hello 0.1.0 (dev build): running"
        assert query(cli, "tracker.example") == "block"
        assert query(cli, "ads.example") == "accept"
        plugin.write_text("#!/usr/bin/env python3\nraise SystemExit(3)\n")
        second = dev.stdout.readline().strip()
        assert second.startswith("[3] hello 0.1.0 (dev build): failed: ") and "code 3" in second
    finally:
        if dev is not None:
            dev.terminate()
            dev.communicate(timeout=10)
        cli("stop", ok=False)
        booted.communicate(timeout=20)


def query(cli: Cli, domain: str) -> str:
    done = cli("query", "connection", "--binary", "/usr/bin/curl", "--domain", domain)
    return done.stdout.split()[0].rstrip(":")


def test_dev_refuses_a_host_not_in_dev_mode(cli: Cli, tmp_path: Path) -> None:
    cli("new", "hello", "--type", "decider", "--dir", str(tmp_path / "hello"))
    busy = cli("dev", str(tmp_path / "hello"), "--interval", "0", ok=False)
    assert busy.returncode == 2 and "--interval" in busy.stderr  # no busy loop
    missing = cli("dev", str(tmp_path / "hello"), "--once", ok=False)
    assert missing.returncode == 1 and "no host is running for this state root" in missing.stderr
    booted = subprocess.Popen(
        cli.argv("boot"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: cli("status", ok=False).returncode == 0, timeout=20)
        done = cli("dev", str(tmp_path / "hello"), "--once", ok=False)
        assert done.returncode == 1
        assert "the booted host is not in dev mode" in done.stderr
        assert "pm-plugins --dev-mode boot" in done.stderr
    finally:
        cli("stop", ok=False)
        booted.communicate(timeout=20)
