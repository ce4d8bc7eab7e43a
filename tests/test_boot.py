"""The loader at boot: verification refusals, dependencies, dev mode, and the reference host.

Every state root here is real: keys generated, packages signed, installed through the
installer, plugins started as processes from sealed copies of the verified bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from host import reference_host
from host.reference_host import ReferenceHost
from host.runtime import PluginHost
from host.sandbox import SandboxSettings
from host.supervise import RestartPolicy
from keys.store import TrustStore
from loader.boot import BootPlan, PlanStatus, plan_boot
from loader.errors import LoaderError
from loader.home import Home
from loader.host_modules import CORE_VERSIONS
from loader.sealed import SealedExecutable
from registry_client.installer import uninstall
from registry_client.package import build_package
from tests.boot_helpers import (
    Publisher,
    install_signed,
    new_publisher,
    set_config,
    trust,
    write_source,
)
from tests.conftest import EXAMPLES, FAKE_PLUGIN, wait_for

CORE = CORE_VERSIONS


def plan(home: Home, dev_mode: bool = False) -> BootPlan:
    return plan_boot(
        home, trust=TrustStore.load(home.trust_store), dev_mode=dev_mode, core_modules=CORE
    )


def row(result: BootPlan, name: str) -> tuple[PlanStatus, str]:
    (found,) = [r for r in result.plugins if r.name == name]
    return found.status, found.reason


def install_unsigned(home: Home, name: str, work: Path) -> None:
    """An unsigned plugin: the executable alone in its release dir, named in plugins.json."""
    release = home.release_dir(name, "1.0.0")
    release.mkdir(parents=True)
    shutil.copyfile(EXAMPLES / "allowlist" / "plugin", release / "plugin")
    (release / "plugin").chmod(0o755)
    entries = json.loads(home.plugins_json.read_text()) if home.plugins_json.exists() else []
    entries.append({"name": name, "types": ["decider"], "version": "1.0.0"})
    home.plugins_json.write_text(json.dumps(entries))


# -- the trust table ------------------------------------------------------------------------


def test_signed_and_trusted_is_verified(home: Home, publisher: Publisher, tmp_path: Path) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    result = plan(home)
    assert row(result, "allowlist")[0] is PlanStatus.VERIFIED
    (planned,) = result.runnable()
    assert planned.needs == ("firewall",)
    assert planned.trust_level == "official" and planned.key_id == publisher.key_id


def test_unsigned_is_refused_without_dev_mode(home: Home, tmp_path: Path) -> None:
    install_unsigned(home, "mine", tmp_path)
    status, reason = row(plan(home), "mine")
    assert status is PlanStatus.UNSIGNED
    assert "only dev mode runs unsigned plugins" in reason
    assert plan(home).runnable() == []


@pytest.mark.parametrize("dev_mode", [False, True])
def test_one_flipped_byte_is_refused_in_both_modes(
    home: Home, publisher: Publisher, tmp_path: Path, dev_mode: bool
) -> None:
    release = install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    artifact = release / "plugin"
    data = bytearray(artifact.read_bytes())
    data[100] ^= 0x01
    artifact.write_bytes(bytes(data))
    status, reason = row(plan(home, dev_mode), "allowlist")
    assert status is PlanStatus.MODIFIED
    assert "was modified" in reason


@pytest.mark.parametrize("dev_mode", [False, True])
def test_another_plugins_manifest_is_refused_in_both_modes(
    home: Home, publisher: Publisher, tmp_path: Path, dev_mode: bool
) -> None:
    a = install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    b = install_signed(home, publisher, write_source(tmp_path, "other"), tmp_path)
    shutil.copyfile(b / "manifest.dsse.json", a / "manifest.dsse.json")
    status, reason = row(plan(home, dev_mode), "allowlist")
    assert status is PlanStatus.INVALID_SIGNATURE
    assert "carries the signed manifest of other 1.0.0" in reason


@pytest.mark.parametrize("dev_mode", [False, True])
def test_revoked_key_is_refused(
    home: Home, publisher: Publisher, tmp_path: Path, dev_mode: bool
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    store = TrustStore.load(home.trust_store)
    store.revoke(publisher.key_id)
    store.save(home.trust_store)
    status, reason = row(plan(home, dev_mode), "allowlist")
    assert status is PlanStatus.REVOKED_KEY
    assert "which is revoked" in reason


@pytest.mark.parametrize("dev_mode", [False, True])
def test_untrusted_key_is_refused(
    home: Home, publisher: Publisher, tmp_path: Path, dev_mode: bool
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    store = TrustStore.load(home.trust_store)
    store.untrust(publisher.key_id)
    store.save(home.trust_store)
    status, reason = row(plan(home, dev_mode), "allowlist")
    assert status is PlanStatus.UNTRUSTED_KEY
    assert "pm-plugins keys trust" in reason


def test_a_plugin_listed_but_not_installed_gets_its_own_row(home: Home) -> None:
    home.plugins_json.write_text('[{"name": "ghost", "types": ["decider"]}]')
    status, reason = row(plan(home), "ghost")
    assert status is PlanStatus.NOT_INSTALLED
    assert "not installed" in reason


@pytest.mark.parametrize(
    ("content", "words"), [(b"not json", "is not valid JSON"), (b'{"name": "a"}', "the top level")]
)
def test_an_unreadable_plugins_json_boots_nothing_and_says_why(
    home: Home, content: bytes, words: str
) -> None:
    home.plugins_json.write_bytes(content)
    result = plan(home)
    assert result.plugins == []
    assert result.error is not None and str(home.plugins_json) in result.error
    assert words in result.error
    assert not result.ok


@pytest.mark.parametrize(
    ("bad", "name", "words"),
    [
        ({"types": ["decider"]}, "entry-1", 'entry 1: field "name" is missing'),
        ({"name": "a", "types": "decider"}, "a", 'field "types" must be a list'),
        ({"name": "a", "types": ["firewall"]}, "a", "unknown type"),
        ({"name": "../x"}, "entry-1", "not a plain name"),
        ("not an object", "entry-1", "the entry must be"),
    ],
)
def test_one_bad_plugins_json_entry_is_refused_alone_and_the_others_boot(
    home: Home, publisher: Publisher, tmp_path: Path, bad: object, name: str, words: str
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "good"), tmp_path)
    good = json.loads(home.plugins_json.read_text())
    home.plugins_json.write_text(json.dumps([bad, *good]))
    result = plan(home)
    assert result.error is None
    status, reason = row(result, name)
    assert status is PlanStatus.BAD_ENTRY
    assert str(home.plugins_json) in reason and words in reason
    assert row(result, "good")[0] is PlanStatus.VERIFIED


def test_a_repeated_plugins_json_entry_is_refused_and_the_first_boots(
    home: Home, publisher: Publisher, tmp_path: Path
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "good"), tmp_path)
    (good,) = json.loads(home.plugins_json.read_text())
    home.plugins_json.write_text(json.dumps([good, {"name": "good", "privileged": True}]))
    result = plan(home)
    status, reason = row(result, "entry-2")
    assert status is PlanStatus.BAD_ENTRY and "repeats the name of entry 1" in reason
    assert row(result, "good")[0] is PlanStatus.VERIFIED


def test_an_unknown_plugins_json_field_is_a_warning_naming_the_likely_field(
    home: Home, publisher: Publisher, tmp_path: Path
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "good"), tmp_path)
    (entry,) = json.loads(home.plugins_json.read_text())
    home.plugins_json.write_text(json.dumps([entry | {"privilegd": True}]))
    result = plan(home)
    assert row(result, "good")[0] is PlanStatus.VERIFIED
    assert result.warnings == [
        f'{home.plugins_json}: entry 1 ("good"): unknown field "privilegd" is ignored '
        '(did you mean "privileged"?)'
    ]


# -- dependencies ---------------------------------------------------------------------------


def test_dependency_cycle_refuses_the_cycle_and_boots_the_rest(
    home: Home, publisher: Publisher, tmp_path: Path
) -> None:
    for name, needs in (("a", {"b": ">=1"}), ("b", {"a": ">=1"}), ("c", {})):
        install_signed(home, publisher, write_source(tmp_path, name, plugins=needs), tmp_path)
    result = plan(home)
    for name in ("a", "b"):
        status, reason = row(result, name)
        assert status is PlanStatus.REFUSED_DEPENDENCY
        assert "cycle (a -> b -> a)" in reason
    assert [r.name for r in result.runnable()] == ["c"]


def test_missing_dependency_is_refused_with_its_name(
    home: Home, publisher: Publisher, tmp_path: Path
) -> None:
    src = write_source(tmp_path, "needy", plugins={"absent": ">=1"})
    install_signed(home, publisher, src, tmp_path)
    status, reason = row(plan(home), "needy")
    assert status is PlanStatus.REFUSED_DEPENDENCY
    assert reason == "plugin needy needs absent>=1, which is not configured in plugins.json"


def test_missing_host_module_is_refused(home: Home, publisher: Publisher, tmp_path: Path) -> None:
    install_signed(home, publisher, write_source(tmp_path, "x", host=("teleport",)), tmp_path)
    status, reason = row(plan(home), "x")
    assert status is PlanStatus.REFUSED_DEPENDENCY
    assert "needs teleport" in reason


def test_version_specifier_not_met_is_refused_and_transitively(
    home: Home, publisher: Publisher, tmp_path: Path
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "base", version="1.4.0"), tmp_path)
    src = write_source(tmp_path, "mid", plugins={"base": ">=2,<3"})
    install_signed(home, publisher, src, tmp_path)
    install_signed(home, publisher, write_source(tmp_path, "top", plugins={"mid": ">=1"}), tmp_path)
    result = plan(home)
    assert row(result, "base")[0] is PlanStatus.VERIFIED
    assert row(result, "mid") == (
        PlanStatus.REFUSED_DEPENDENCY,
        "plugin mid needs base<3,>=2, but base 1.4.0 is installed",
    )
    status, reason = row(result, "top")
    assert status is PlanStatus.REFUSED_DEPENDENCY and "needs mid" in reason


def test_a_refused_dependency_refuses_its_dependents(
    home: Home, publisher: Publisher, tmp_path: Path
) -> None:
    install_unsigned(home, "base", tmp_path)
    install_signed(
        home, publisher, write_source(tmp_path, "top", plugins={"base": ">=1"}), tmp_path
    )
    status, reason = row(plan(home), "top")
    assert status is PlanStatus.REFUSED_DEPENDENCY
    assert "which cannot run (unsigned)" in reason


# -- the reference host, with real processes ------------------------------------------------


@pytest.fixture
def booted(home: Home) -> Iterator[list[ReferenceHost]]:
    hosts: list[ReferenceHost] = []
    yield hosts
    for host in hosts:
        host.shutdown()


def boot(home: Home, hosts: list[ReferenceHost], dev_mode: bool = False) -> ReferenceHost:
    host = ReferenceHost(home, dev_mode=dev_mode)
    hosts.append(host)
    host.boot()
    return host


def module_row(host: ReferenceHost, name: str) -> dict[str, object]:
    found: list[dict[str, object]] = [m for m in host.status()["modules"] if m["name"] == name]
    return found[0]


def test_dev_mode_runs_unsigned_with_a_loud_warning(
    home: Home, tmp_path: Path, booted: list[ReferenceHost], caplog: pytest.LogCaptureFixture
) -> None:
    install_unsigned(home, "mine", tmp_path)
    with caplog.at_level(logging.WARNING):
        host = boot(home, booted, dev_mode=True)
    assert "plugin mine is UNSIGNED and runs only because dev mode is on" in caplog.text
    mine = module_row(host, "mine")
    assert mine["state"] == "running" and mine["signer"] == "unsigned (dev mode)"
    assert host.decide(binary="/usr/bin/curl", domain="example.com")["by"] == "mine"


def test_refused_plugins_do_not_stop_the_host_booting(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    install_unsigned(home, "mine", tmp_path)
    host = boot(home, booted)
    assert module_row(host, "allowlist")["state"] == "running"
    refused = module_row(host, "mine")
    assert refused["state"] == "refused" and refused["verification"] == "unsigned"
    assert all(
        m["state"] == "running"
        for m in host.status()["modules"]
        if m["name"] in ("firewall", "config")
    )


def test_disable_and_reenable_a_dependency_at_run_time(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    host = boot(home, booted)
    first_pid = module_row(host, "allowlist")["pid"]
    assert isinstance(first_pid, int)
    assert host.disable("firewall") == ["allowlist"]
    stopped = module_row(host, "allowlist")
    assert stopped["state"] == "stopped" and stopped["pid"] is None
    assert "while firewall is disabled" in str(stopped["reason"])
    host.enable("firewall")
    again = module_row(host, "allowlist")
    assert again["state"] == "running"
    assert isinstance(again["pid"], int) and again["pid"] != first_pid


def test_a_swap_after_verification_does_not_run_the_swapped_bytes(
    home: Home,
    publisher: Publisher,
    tmp_path: Path,
    booted: list[ReferenceHost],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("192.0.2.9 printer.lan\n")
    src = write_source(
        tmp_path,
        "hosts",
        types=("resolver",),
        host=("resolver",),
        executable=EXAMPLES / "hosts" / "plugin",
        capabilities=f'read = ["{hosts_file}"]',
    )
    release = install_signed(home, publisher, src, tmp_path)
    set_config(home, "hosts", config={"path": str(hosts_file)})
    marker = tmp_path / "swapped-bytes-ran"
    real_seal = reference_host.seal

    def seal_then_swap(data: bytes, name: str) -> SealedExecutable:
        """Boot verified and is sealing; now an attacker swaps the file on disk."""
        sealed = real_seal(data, name)
        (release / "plugin").write_text(f"#!/bin/sh\ntouch {marker}\n")
        return sealed

    monkeypatch.setattr(reference_host, "seal", seal_then_swap)
    host = boot(home, booted)
    assert (release / "plugin").read_text().startswith("#!/bin/sh")  # the swap happened
    answer = host.resolve("printer.lan")
    assert answer["answered_by"] == "hosts"
    assert answer["records"][0]["data"] == "192.0.2.9"
    assert not marker.exists()


def test_status_names_signer_version_and_pid(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist", version="1.2.0"), tmp_path)
    host = boot(home, booted)
    allow = module_row(host, "allowlist")
    assert allow["version"] == "1.2.0"
    assert allow["signer"] == f"{publisher.key_id[:12]} (official)"
    assert wait_for(lambda: isinstance(module_row(host, "allowlist")["pid"], int))
    spn = module_row(host, "spn")
    assert spn["state"] == "disabled"


def refusing_restarts(tmp_path: Path) -> tuple[Path, bytes, str]:
    """A marker file, a plugin script that starts once then refuses (writing the marker), and
    the capabilities it needs for that: read the fake, write the marker's folder."""
    markers = tmp_path / "markers"
    markers.mkdir()
    markers.chmod(0o777)  # under a root host the plugin runs as a uid of its own
    marker = markers / "starts"
    script = f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_PLUGIN}" refuse-restart "{marker}"\n'
    caps = f'read = ["{FAKE_PLUGIN.parent}"]\nwrite = ["{markers}"]'
    return marker, script.encode(), caps


def supervised(home: Home, policy: RestartPolicy) -> PluginHost:
    """A plugin host as the reference host makes it, with a restart policy of the test's."""
    protected = SandboxSettings(protected=(str(home.root),))
    return PluginHost(base_directory=str(home.data_dir), restart=policy, sandbox=protected)


def test_a_crash_loop_backs_off_then_shows_failed_with_stderr_in_status(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    marker, script, caps = refusing_restarts(tmp_path)
    src = write_source(tmp_path, "fake", executable=script, capabilities=caps)
    install_signed(home, publisher, src, tmp_path)
    policy = RestartPolicy(initial_backoff=0.05, max_crashes=3, window=60.0)
    host = ReferenceHost(home, dev_mode=False, plugin_host=supervised(home, policy))
    booted.append(host)
    host.boot()
    pid = module_row(host, "fake")["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: module_row(host, "fake")["state"] == "failed", 10.0)
    failed = module_row(host, "fake")
    assert failed["reason"] == (
        "plugin fake crashed 3 times in 60 s; giving up; "
        "last stderr lines: fake refuses to start again"
    )
    assert failed["pid"] is None
    assert len(marker.read_text().splitlines()) == 3


def test_a_plugin_named_like_a_host_module_is_refused_and_the_host_boots(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    # the installer refuses the name; a hand-made state root reaches the loader anyway
    src = write_source(tmp_path, "config", host=())
    package = build_package(src, publisher.key, tmp_path, host_module_name_ok=True)
    shutil.copytree(package, home.release_dir("config", "1.0.0"))
    set_entries = json.loads(home.plugins_json.read_text())
    set_entries.append({"name": "config", "types": ["decider"], "version": "1.0.0"})
    home.plugins_json.write_text(json.dumps(set_entries))
    status, reason = row(plan(home), "config")
    assert status is PlanStatus.NAME_TAKEN
    assert reason == "plugin config has the name of a host module; a plugin cannot replace one"
    host = boot(home, booted)
    assert module_row(host, "config")["kind"] == "core"
    assert module_row(host, "allowlist")["state"] == "running"


def test_a_plugin_that_fails_for_good_stops_its_dependents(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    _, script, caps = refusing_restarts(tmp_path)
    base = write_source(tmp_path, "base", executable=script, capabilities=caps)
    install_signed(home, publisher, base, tmp_path)
    src = write_source(tmp_path, "user", plugins={"base": ">=1"})
    install_signed(home, publisher, src, tmp_path)
    policy = RestartPolicy(initial_backoff=0.05, max_crashes=2, window=60.0)
    host = ReferenceHost(home, dev_mode=False, plugin_host=supervised(home, policy))
    booted.append(host)
    host.boot()
    assert module_row(host, "user")["state"] == "running"
    pid = module_row(host, "base")["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: module_row(host, "user")["state"] != "running", 10.0)
    assert module_row(host, "base")["state"] == "failed"
    user = module_row(host, "user")
    assert user["reason"] == "user was stopped: it needs base, which failed"
    assert user["pid"] is None


def test_plugins_find_the_hosts_python_without_the_venv_on_path(
    home: Home,
    publisher: Publisher,
    tmp_path: Path,
    booted: list[ReferenceHost],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as a user running .venv/bin/pm-plugins
    host = boot(home, booted)
    assert module_row(host, "allowlist")["state"] == "running"


def test_an_unreadable_journal_still_boots_the_hosts_own_modules(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    (home.root / ".pending.json").write_text("not json")
    host = boot(home, booted)
    error = host.status()["plugins_json_error"]
    assert "the journal of an interrupted install cannot be read" in str(error)
    assert module_row(host, "firewall")["state"] == "running"
    assert all(m["kind"] == "core" for m in host.status()["modules"])


def test_the_auth_module_runs_hook_plugins(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    src = write_source(
        tmp_path,
        "fail2lock",
        types=("hook",),
        host=("auth", "notifications"),
        executable=EXAMPLES / "fail2lock" / "plugin",
    )
    install_signed(home, publisher, src, tmp_path)
    set_config(home, "fail2lock", config={"allowed_fails": 2, "interval_seconds": 60})
    host = boot(home, booted)
    results = [host.run_hook("PreAuthCheck", "alice") for _ in range(3)]
    assert [r["entity"]["locked"] for r in results] == [False, False, True]
    with pytest.raises(ValueError, match="unknown hook point"):
        host.run_hook("Nope", "alice")
    host.disable("auth")
    with pytest.raises(LoaderError, match="the auth module is not running"):
        host.run_hook("PreAuthCheck", "alice")


# -- revocation reaches the running host ------------------------------------------------------


def revoke(home: Home, publisher: Publisher) -> None:
    store = TrustStore.load(home.trust_store)
    store.revoke(publisher.key_id)
    store.save(home.trust_store)


def test_revoking_a_signer_stops_its_running_plugins(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    host = boot(home, booted)
    assert module_row(host, "allowlist")["state"] == "running"
    assert host.recheck_trust() == []  # nothing changed: nothing stops
    revoke(home, publisher)
    assert host.recheck_trust() == ["allowlist"]
    row = module_row(host, "allowlist")
    assert row["state"] == "failed" and row["pid"] is None
    assert row["reason"] == (
        f"plugin allowlist may no longer run: it is signed by {publisher.key_id[:12]}... "
        "(revoked); 0 trusted signature(s) remain and this host requires 1"
    )
    host.enable("allowlist")  # module enable re-checks too
    assert host.plugins.get("allowlist").state.value == "failed"


def test_a_crash_restart_re_checks_the_signers(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "allowlist"), tmp_path)
    host = boot(home, booted)
    pid = host.plugins.get("allowlist").pid
    assert pid is not None
    store = TrustStore.load(home.trust_store)
    store.untrust(publisher.key_id)
    store.save(home.trust_store)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: host.plugins.get("allowlist").state.value == "failed", 10)
    reason = host.plugins.get("allowlist").reason
    assert reason.endswith(
        "(no longer trusted); 0 trusted signature(s) remain and this host requires 1"
    )
    assert host.plugins.get("allowlist").restarts == 0


def test_status_shows_a_plugin_in_configure_as_starting_with_its_pid(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    script = f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_PLUGIN}" slow-configure\n'
    caps = f'read = ["{FAKE_PLUGIN.parent}"]'
    src = write_source(tmp_path, "slow", executable=script.encode(), capabilities=caps)
    install_signed(home, publisher, src, tmp_path)
    host = ReferenceHost(home, dev_mode=False)
    booted.append(host)
    starter = threading.Thread(target=host.boot)
    starter.start()
    try:
        seen: list[dict[str, object]] = []

        def starting() -> bool:
            rows = [m for m in host.status()["modules"] if m["name"] == "slow"]
            seen[:] = rows
            return bool(rows) and rows[0]["state"] == "starting"

        assert wait_for(starting, 10), seen
        assert isinstance(seen[0]["pid"], int)
    finally:
        starter.join(30)
    assert module_row(host, "slow")["state"] == "running"


def test_a_sealed_plugins_traceback_names_its_release_file(
    home: Home,
    publisher: Publisher,
    tmp_path: Path,
    booted: list[ReferenceHost],
    caplog: pytest.LogCaptureFixture,
) -> None:
    src = write_source(tmp_path, "fake", executable=FAKE_PLUGIN)  # runs as "normal"
    release = install_signed(home, publisher, src, tmp_path)
    host = boot(home, booted)
    with caplog.at_level(logging.DEBUG):
        host.decide(binary="/usr/bin/curl", domain="error.test.")  # its decide raises
        assert wait_for(lambda: "fake decider failure" in caplog.text, 5)
        assert wait_for(lambda: f'File "{release / "plugin"}"' in caplog.text, 5)
    assert "/proc/self/fd/" not in caplog.text


def test_a_same_named_plugin_of_another_publisher_gets_a_fresh_data_folder(
    home: Home, publisher: Publisher, tmp_path: Path, booted: list[ReferenceHost]
) -> None:
    install_signed(home, publisher, write_source(tmp_path / "a", "allowlist"), tmp_path / "a")
    boot(home, booted).shutdown()
    secret = home.data_dir / "allowlist" / "token"
    secret.write_text("the first publisher's")
    uninstall(home, "allowlist")  # keeps the data folder "for a reinstall"

    install_signed(home, publisher, write_source(tmp_path / "b", "allowlist"), tmp_path / "b")
    boot(home, booted).shutdown()
    assert secret.read_text() == "the first publisher's"  # the same signer keeps it
    uninstall(home, "allowlist")

    squatter = new_publisher()
    trust(home, squatter, level="community")
    install_signed(home, squatter, write_source(tmp_path / "c", "allowlist"), tmp_path / "c")
    host = boot(home, booted)
    assert module_row(host, "allowlist")["state"] == "running"
    assert not secret.exists()  # the squatter's folder is a new one
    (kept,) = (home.root / "data-orphaned").iterdir()
    assert (kept / "token").read_text() == "the first publisher's"  # moved aside, not lost
