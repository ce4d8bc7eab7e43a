"""The `pm-plugins` command line, run as the user runs it (a real process per command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot_helpers import write_source
from tests.conftest import EXAMPLES, FAKE_PLUGIN, wait_for

PASS = {"PM_PLUGINS_KEY_PASSPHRASE": "correct horse"}


class Cli:
    """`pm-plugins --home HOME ...` in a subprocess, with the test's environment."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, **PASS}
        self.env.pop("PM_PLUGINS_DEV_MODE", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli", "--home", str(self.home), *args]

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=60
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


def key_id_of(output: str) -> str:
    (line,) = [ln for ln in output.splitlines() if ln.startswith("key id ")]
    return line.removeprefix("key id ")


def publish(cli: Cli, tmp_path: Path, *names: str) -> str:
    """Generate a key, trust it, package `names` from examples; returns the key id."""
    kid = key_id_of(cli("keys", "generate", "me").stdout)
    cli("keys", "trust", str(cli.home / "keys" / "me.pub"), "--level", "official")
    for name in names:
        cli("package", str(EXAMPLES / name), "--key", "me", "--out", str(tmp_path / "dist"))
    return kid


def test_keys_generate_list_trust_untrust_revoke_export(cli: Cli) -> None:
    kid = key_id_of(cli("keys", "generate", "me").stdout)
    key_file = cli.home / "keys" / "me.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    public = cli("keys", "export", "me").stdout.strip()
    assert cli("keys", "trust", public, "--level", "official", "--label", "me").stdout.startswith(
        f"trusted key {kid}"
    )
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert listed["trusted"] == [{"key_id": kid, "level": "official", "label": "me"}]
    assert listed["own"] == ["me"]
    cli("keys", "untrust", kid)
    assert json.loads(cli("keys", "list", "--json").stdout)["trusted"] == []
    cli("keys", "revoke", kid)
    refused = cli("keys", "trust", public, ok=False)
    assert refused.returncode == 1
    assert f"key {kid} is revoked and cannot be trusted again" in refused.stderr


def test_a_key_needs_a_passphrase(cli: Cli) -> None:
    cli.env.pop("PM_PLUGINS_KEY_PASSPHRASE")
    done = cli("keys", "generate", "me", ok=False)
    assert done.returncode == 1
    assert "PM_PLUGINS_KEY_PASSPHRASE" in done.stderr
    assert not (cli.home / "keys" / "me.key").exists()


def test_package_install_verify_list(cli: Cli, tmp_path: Path) -> None:
    kid = publish(cli, tmp_path, "hosts")
    package = tmp_path / "dist" / "hosts-1.0.0"
    assert sorted(p.name for p in package.iterdir()) == ["manifest.dsse.json", "plugin"]
    out = cli("install", str(package)).stdout
    assert out.splitlines()[0] == f"hosts 1.0.0: installed, signed by {kid[:12]}... (official)"
    assert "  may: read /etc/hosts" in out.splitlines()
    assert (cli.home / "plugins" / "hosts" / "1.0.0" / "plugin").is_file()
    lock = json.loads((cli.home / "plugins.lock").read_text())
    assert lock["plugins"]["hosts"]["signers"] == [kid] and lock["version"] == 2
    verified = json.loads(cli("verify", "--json").stdout)
    assert [(p["name"], p["status"]) for p in verified["plugins"]] == [("hosts", "verified")]
    listed = json.loads(cli("list", "--json").stdout)
    assert listed[0]["name"] == "hosts" and listed[0]["version"] == "1.0.0"
    assert cli("install", str(package)).stdout.startswith("hosts 1.0.0: already installed")


def test_install_refuses_an_untrusted_package_and_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    kid = publish(cli, tmp_path, "hosts")
    cli("keys", "untrust", kid)
    done = cli("install", str(tmp_path / "dist" / "hosts-1.0.0"), ok=False)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: refusing to install")
    assert f"signed by key {kid[:12]}..., which is not in your trust store" in line
    assert not (cli.home / "plugins.json").exists()
    assert not (cli.home / "plugins").exists() or not any((cli.home / "plugins").iterdir())


def test_install_of_a_source_dir_needs_dev_mode(cli: Cli) -> None:
    done = cli("install", str(EXAMPLES / "hosts"), ok=False)
    assert "not a signed package" in done.stderr and "--dev-mode" in done.stderr
    out = cli("--dev-mode", "install", str(EXAMPLES / "hosts")).stdout
    assert "UNSIGNED (dev mode)" in out
    refused = cli("verify", ok=False)
    assert refused.returncode == 1 and "unsigned" in refused.stdout
    assert cli("--dev-mode", "verify").returncode == 0


def test_verify_exits_non_zero_on_a_malformed_plugins_json(cli: Cli) -> None:
    cli.home.mkdir(parents=True)
    (cli.home / "plugins.json").write_text('[{"name": "a", "types": ["decider"], "privileged": 1}]')
    done = cli("verify", ok=False)
    assert done.returncode == 1
    assert 'field "privileged" must be true or false, not 1' in done.stdout


def test_uninstall_refuses_while_a_dependent_is_installed(cli: Cli, tmp_path: Path) -> None:
    publish(cli, tmp_path, "hosts")
    cli("install", str(tmp_path / "dist" / "hosts-1.0.0"))
    dependent = tmp_path / "dependent"
    dependent.mkdir()
    (dependent / "plugin.toml").write_text(
        'name = "dependent"\nversion = "0.1"\ndescription = "d"\npublisher = "p"\n'
        'types = ["resolver"]\nexecutable = "plugin"\n[requires]\nhost = []\n'
        'plugins = {hosts = ">=1"}\n'
    )
    (dependent / "plugin").write_bytes((EXAMPLES / "hosts" / "plugin").read_bytes())
    cli("package", str(dependent), "--key", "me", "--out", str(tmp_path / "dist"))
    cli("install", str(tmp_path / "dist" / "dependent-0.1"))
    done = cli("uninstall", "hosts", ok=False)
    assert "plugin hosts is required by dependent" in done.stderr
    assert (cli.home / "plugins" / "hosts").exists()
    cli("uninstall", "hosts", "--force")
    assert not (cli.home / "plugins" / "hosts").exists()
    assert [e["name"] for e in json.loads((cli.home / "plugins.json").read_text())] == ["dependent"]


@pytest.fixture
def running_host(cli: Cli, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    publish(cli, tmp_path, "hosts", "allowlist")
    cli(
        "install",
        str(tmp_path / "dist" / "hosts-1.0.0"),
        str(tmp_path / "dist" / "allowlist-1.0.0"),
    )
    hosts_file = cli.home / "data" / "hosts" / "hosts"  # its data folder, which it may read
    hosts_file.parent.mkdir(parents=True)
    hosts_file.write_text("192.0.2.7 printer.lan\n")
    entries = json.loads((cli.home / "plugins.json").read_text())
    entries[0]["config"] = {"path": str(hosts_file)}
    (cli.home / "plugins.json").write_text(json.dumps(entries))
    proc = subprocess.Popen(
        cli.argv("boot"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: cli("status", ok=False).returncode == 0, timeout=20), (
            proc.stderr.read() if proc.poll() is not None and proc.stderr else "no answer"
        )
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=20)


def test_boot_status_query_disable_and_stop(cli: Cli, running_host: subprocess.Popen[str]) -> None:
    sock = cli.home / "run" / "host.sock"
    assert sock.stat().st_mode & 0o777 == 0o600
    assert (cli.home / "run").stat().st_mode & 0o777 == 0o700
    status = json.loads(cli("status", "--json").stdout)
    states = {m["name"]: m["state"] for m in status["modules"]}
    assert states == {
        "config": "running",
        "notifications": "running",
        "firewall": "running",
        "resolver": "running",
        "auth": "running",
        "spn": "disabled",
        "hosts": "running",
        "allowlist": "running",
    }
    hosts = next(m for m in status["modules"] if m["name"] == "hosts")
    assert hosts["sandbox"]["confined"] is True
    assert hosts["sandbox"]["network"] == "none (own network namespace)"
    assert hosts["sandbox"]["processes"].startswith("no child processes; own PID namespace")
    text = cli("status").stdout
    assert "plugin hosts: confined\n  filesystem: own data folder, runtime read-only, read " in text
    assert "UNCONFINED" not in text
    dns = json.loads(cli("query", "dns", "printer.lan", "--json").stdout)
    assert dns["answered_by"] == "hosts" and dns["records"][0]["data"] == "192.0.2.7"
    hook = cli("query", "hook", "PreAuthCheck", "--entity", "bob", "--meta", "team:red")
    assert hook.stdout.strip() == "bob: not locked; meta team:red"
    verdict = cli("query", "connection", "--binary", "/usr/bin/curl", "--domain", "example.com")
    assert verdict.stdout.startswith("accept (by allowlist)")
    assert cli("module", "disable", "resolver").stdout.strip() == (
        "resolver disabled; stopped hosts"
    )
    refused = cli("query", "dns", "printer.lan", ok=False)
    assert refused.returncode == 1 and "the resolver module is not running" in refused.stderr
    cli("module", "enable", "resolver")
    assert "answered by hosts" in cli("query", "dns", "printer.lan").stdout
    cli("stop")
    assert running_host.wait(timeout=20) == 0
    assert not sock.exists()


def test_status_without_a_host_says_how_to_start_one(cli: Cli) -> None:
    done = cli("status", ok=False)
    assert done.returncode == 1
    assert "no host is running for this state root" in done.stderr
    assert "pm-plugins boot" in done.stderr


def test_refusals_from_the_system_are_one_sentence_too(cli: Cli, tmp_path: Path) -> None:
    publish(cli, tmp_path, "hosts")
    (cli.home / "plugins").write_text("not a folder")
    done = cli("install", str(tmp_path / "dist" / "hosts-1.0.0"), ok=False)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "plugins" in line and "Traceback" not in done.stderr
    binary = tmp_path / "key.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    done = cli("keys", "trust", str(binary), ok=False)
    assert done.stderr.strip() == f"Error: {binary}: is not a base64 public key"


def test_boot_with_a_home_too_long_for_a_socket_says_so(tmp_path: Path) -> None:
    long_home = tmp_path / ("h" * 120)
    done = Cli(long_home)("boot", ok=False)
    assert done.returncode == 1
    assert "longer than unix sockets allow" in done.stderr and "Traceback" not in done.stderr


def test_a_name_is_a_name_even_if_a_folder_has_it(cli: Cli, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    (workdir / "hosts").mkdir(parents=True)
    done = subprocess.run(
        cli.argv("install", "hosts"), cwd=workdir, env=cli.env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "hosts 1.0.0: installed" in done.stdout


def test_a_host_can_require_two_signatures(cli: Cli, tmp_path: Path) -> None:
    ids = []
    for name in ("alice", "bob"):
        ids.append(key_id_of(cli("keys", "generate", name).stdout))
        cli("keys", "trust", str(cli.home / "keys" / f"{name}.pub"))
    (cli.home / "host.json").write_text('{"signatureThreshold": 2}')
    one = tmp_path / "one"
    both = tmp_path / "both"
    cli("package", str(EXAMPLES / "hosts"), "--key", "alice", "--out", str(one))
    done = cli("install", str(one / "hosts-1.0.0"), ok=False)
    assert "is signed by 1 trusted key(s) and this host requires 2" in done.stderr
    assert not (cli.home / "plugins.json").exists()
    cli("package", str(EXAMPLES / "hosts"), "--key", "alice", "--key", "bob", "--out", str(both))
    installed = cli("install", str(both / "hosts-1.0.0")).stdout
    assert all(f"{kid[:12]}..." in installed for kid in ids)
    row = json.loads(cli("verify", "--json").stdout)["plugins"][0]
    assert row["status"] == "verified" and sorted(row["key_ids"]) == sorted(ids)
    (cli.home / "host.json").write_text('{"signatureThreshold": 3}')
    refused = json.loads(cli("verify", "--json", ok=False).stdout)["plugins"][0]
    assert refused["status"] == "invalid-signature"


def test_package_refuses_the_same_key_twice_and_an_unknown_key(cli: Cli) -> None:
    cli("keys", "generate", "me")
    done = cli("package", str(EXAMPLES / "hosts"), "--key", "me", "--key", "me", ok=False)
    assert "is the same key as an earlier --key; a threshold counts distinct keys" in done.stderr
    done = cli("package", str(EXAMPLES / "hosts"), "--key", "nosuch", ok=False)
    assert "nosuch is neither a key file nor one of your keys" in done.stderr


def test_the_lock_binds_in_verify_and_list_and_a_bad_lock_is_still_json(
    cli: Cli, tmp_path: Path
) -> None:
    publish(cli, tmp_path, "hosts")
    cli("install", str(tmp_path / "dist" / "hosts-1.0.0"))
    lock = json.loads((cli.home / "plugins.lock").read_text())
    lock["plugins"]["hosts"]["sha256"] = "0" * 64
    (cli.home / "plugins.lock").write_text(json.dumps(lock))
    done = cli("verify", "--json", ok=False)
    assert done.returncode == 1
    (row,) = json.loads(done.stdout)["plugins"]
    assert row["status"] == "lock-mismatch" and "differs from plugins.lock" in row["reason"]
    (listed,) = json.loads(cli("list", "--json").stdout)
    assert listed["status"] == "lock-mismatch" and not listed["runs"]
    assert "lock-mismatch: plugin hosts 1.0.0 differs" in cli("list").stdout
    (cli.home / "plugins.lock").write_text("{not json")
    done = cli("verify", "--json", ok=False)
    assert done.returncode == 1
    verified = json.loads(done.stdout)  # always JSON
    assert verified["plugins"] == [] and "plugins.lock" in verified["error"]


def test_list_shows_a_configured_plugin_that_is_not_on_disk(cli: Cli, tmp_path: Path) -> None:
    publish(cli, tmp_path, "hosts")
    cli("install", str(tmp_path / "dist" / "hosts-1.0.0"))
    (cli.home / "plugins" / "hosts" / "1.0.0" / "plugin").unlink()
    (listed,) = json.loads(cli("list", "--json").stdout)
    assert (
        listed["status"] == "not-installed"
        and "must hold exactly one artifact" in (listed["reason"])
    )


def test_grant_privileged_is_bound_to_the_signers(cli: Cli, tmp_path: Path) -> None:
    kid = publish(cli, tmp_path, "hosts")
    cli("install", str(tmp_path / "dist" / "hosts-1.0.0"))
    out = cli("grant", "hosts", "privileged").stdout
    assert out.strip() == f"hosts 1.0.0: privileged granted (while signed by {kid[:12]}...)"
    lock = json.loads((cli.home / "plugins.lock").read_text())
    assert lock["plugins"]["hosts"]["grants"] == ["privileged"]
    cli("grant", "hosts", "privileged", "--revoke")
    lock = json.loads((cli.home / "plugins.lock").read_text())
    assert lock["plugins"]["hosts"]["grants"] == []
    refused = cli("grant", "ghost", "privileged", ok=False)
    assert refused.returncode == 1 and "plugin ghost is not installed" in refused.stderr


def test_install_needs_names_or_locked_alone(cli: Cli) -> None:
    done = cli("install", ok=False)
    assert done.returncode == 2 and "name plugins to install, or pass --locked alone" in done.stderr
    done = cli("install", "hosts", "--locked", ok=False)
    assert done.returncode == 2
    out = cli("install", "--locked").stdout
    assert out.strip() == "nothing to do: every release plugins.lock records is installed"


def test_keys_revoke_stops_the_plugins_it_signed_in_the_booted_host(
    cli: Cli, running_host: subprocess.Popen[str]
) -> None:
    (kid,) = [k["key_id"] for k in json.loads(cli("keys", "list", "--json").stdout)["trusted"]]
    out = cli("keys", "revoke", kid).stdout.splitlines()
    assert out[0] == f"key {kid} is revoked"
    assert sorted(out[1:]) == [
        "stopped plugin allowlist in the booted host: its signers are no longer trusted",
        "stopped plugin hosts in the booted host: its signers are no longer trusted",
    ]
    states = {m["name"]: m["state"] for m in json.loads(cli("status", "--json").stdout)["modules"]}
    assert states["hosts"] == "failed" and states["allowlist"] == "failed"
    cli("stop")
    assert running_host.wait(timeout=20) == 0


def test_an_install_while_a_host_runs_says_a_restart_is_needed(
    cli: Cli, running_host: subprocess.Popen[str], tmp_path: Path
) -> None:
    src = tmp_path / "hosts-next"
    shutil.copytree(EXAMPLES / "hosts", src)
    toml = (src / "plugin.toml").read_text().replace('version = "1.0.0"', 'version = "1.0.1"')
    (src / "plugin.toml").write_text(toml)
    cli("package", str(src), "--key", "me", "--out", str(tmp_path / "dist"))
    out = cli("install", str(tmp_path / "dist" / "hosts-1.0.1")).stdout.splitlines()
    assert out[0].startswith("hosts 1.0.1: upgraded from 1.0.0")
    assert out[-1] == (
        "  note: restart needed: the booted host still runs hosts 1.0.0; restart it "
        "(`pm-plugins stop`, then `boot`) to run 1.0.1"
    )
    cli("stop")
    assert running_host.wait(timeout=20) == 0


def test_notifications_are_listed_and_answered_from_the_command_line(
    cli: Cli, tmp_path: Path
) -> None:
    publish(cli, tmp_path)
    script = f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_PLUGIN}" services\n'
    caps = f'read = ["{FAKE_PLUGIN.parent}"]'
    src = write_source(tmp_path, "asker", executable=script.encode(), capabilities=caps)
    cli("package", str(src), "--key", "me", "--out", str(tmp_path / "dist"))
    cli("install", str(tmp_path / "dist" / "asker-1.0.0"))
    proc = subprocess.Popen(
        cli.argv("boot"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        listed: dict[str, list[dict[str, object]]] = {}

        def waiting() -> bool:
            done = cli("notifications", "--json", ok=False)
            if done.returncode == 0:
                listed.update(json.loads(done.stdout))
            return bool(listed.get("waiting"))

        assert wait_for(waiting, 20)
        (note,) = listed["waiting"]
        assert (note["plugin"], note["title"], note["message"]) == (
            "asker",
            "Fake asks",
            "Pick one",
        )
        assert note["actions"] == [{"id": "yes", "text": "Yes"}]
        assert "[waiting for an answer] Fake asks: Pick one" in cli("notifications").stdout
        refused = cli("notifications", "answer", str(note["event_id"]), "no", ok=False)
        assert refused.returncode == 1 and "has no action" in refused.stderr
        cli("notifications", "answer", str(note["event_id"]), "yes")
        report = cli.home / "data" / "asker" / "services-asker.json"
        assert wait_for(report.exists, 10)
        assert json.loads(report.read_text())["answer"] == "yes"  # notify() returned it
        gone = cli("notifications", "dismiss", "asker:nothing", ok=False)
        assert gone.returncode == 1 and "no shown notification" in gone.stderr
        cli("stop")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=20)


def test_an_index_command_refused_by_the_disk_says_so_in_one_sentence(tmp_path: Path) -> None:
    import click

    from cli.index import _refusals

    with pytest.raises(click.ClickException) as err, _refusals():
        (tmp_path / "missing" / "x.json").write_text("{}")
    assert err.value.message == f"{tmp_path / 'missing' / 'x.json'}: No such file or directory"
