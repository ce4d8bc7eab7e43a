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
