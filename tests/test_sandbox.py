"""Attacks of a hostile plugin on the host, each refused or contained by the sandbox, with a
well-behaved plugin beside it still answering.

Real processes: tests/fakes/attacker.py tries what it is told from its on_init and records
what happened; every test also checks the host's side (files unchanged, no connection
accepted, no signal received, no process left), not only what the plugin says.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
import pytest

from cli.render import sandboxes
from host.control import ControlServer
from host.gate import PeerGate
from host.runtime import PluginHost, PluginSpec
from host.sandbox import SandboxSettings, uid_for
from host.services.backchannel import HostServices
from loader.capabilities import Capabilities
from pm_plugin.wire.portmaster import network_pb2, plugins_pb2, plugins_pb2_grpc
from tests.conftest import FAKE_PLUGIN, wait_for

ATTACKER = Path(__file__).resolve().parent / "fakes" / "attacker.py"
PRIVATE = ("host.json", "plugins.json", "trust.json", "keys/publisher.key")


@dataclass
class State:
    """A state root as the host keeps it, with the plugins' data folders under it."""

    root: Path
    data: Path
    outside: Path  # a file of the user's, outside every folder a plugin may see

    def snapshot(self) -> dict[str, bytes]:
        files = [self.outside, self.data / "victim" / "secret"]
        files += [self.root / name for name in PRIVATE]
        return {str(f): f.read_bytes() for f in files}


@pytest.fixture
def state(tmp_path: Path) -> State:
    root = tmp_path / "state"
    (root / "keys").mkdir(parents=True)
    for name in PRIVATE:
        (root / name).write_text(f"private {name}\n")
    (root / "data" / "victim").mkdir(parents=True)
    (root / "data" / "victim" / "secret").write_text("the victim's data\n")
    outside = tmp_path / "home" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text("the user's file\n")
    return State(root, root / "data", outside)


def make_host(state: State, mode: str = "required") -> PluginHost:
    settings = SandboxSettings(mode=mode, protected=(str(state.root),))
    return PluginHost(
        HostServices(), base_directory=str(state.data), sandbox=settings, handshake_timeout=10
    )


@pytest.fixture
def host(state: State) -> Iterator[PluginHost]:
    h = make_host(state)
    yield h
    h.stop_all()


def attacker(attacks: list[tuple[str, str]], caps: Capabilities | None = None) -> PluginSpec:
    argv = (sys.executable, str(ATTACKER), json.dumps(attacks))
    return PluginSpec(
        name="attacker", argv=argv, types=("decider",), capabilities=caps or Capabilities()
    )


def victim(privileged: bool = False) -> PluginSpec:
    argv = (sys.executable, str(FAKE_PLUGIN), "services")
    return PluginSpec(name="victim", argv=argv, types=("decider",), privileged=privileged)


def run_attacks(host: PluginHost, state: State, spec: PluginSpec) -> dict[str, str]:
    """Start the victim and the attacker; the attacker's outcomes, by attack."""
    host.add(victim(privileged=True))
    host.add(spec)
    assert host.start_all() == {}
    report = state.data / "attacker" / "attacks.json"
    assert wait_for(report.exists, timeout=20), "the attacker never reported"
    outcomes: dict[str, str] = json.loads(report.read_text())
    assert_still_answering(host)
    return outcomes


def assert_still_answering(host: PluginHost) -> None:
    """The victim blocks block.test. (the attacker stays undecided); both accept accept.test."""
    for domain, verdict in (("block.test.", "BLOCK"), ("accept.test.", "ACCEPT")):
        conn = network_pb2.Connection(id=f"c-{domain}")
        conn.entity.domain = domain
        assert host.decide(conn).verdict == network_pb2.Verdict.Value(f"VERDICT_{verdict}")


def refused(outcomes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in outcomes.items() if not v.startswith("refused")}


# -- filesystem ---------------------------------------------------------------------------------


def test_a_plugin_reaches_none_of_the_host_files_nor_another_plugins(
    host: PluginHost, state: State
) -> None:
    before = state.snapshot()
    targets = [*before, str(state.root / "new.json"), str(state.data / "victim" / "planted")]
    attacks = [("read", t) for t in before] + [("write", t) for t in targets]
    attacks += [("write", str(state.data / "attacker" / "mine.txt"))]
    outcomes = run_attacks(host, state, attacker(attacks))
    mine = outcomes.pop(f"write {state.data / 'attacker' / 'mine.txt'}")
    assert mine == "ok: written"  # its own data folder is writable: the harness can see success
    assert (state.data / "attacker" / "mine.txt").exists()
    assert refused(outcomes) == {}
    assert state.snapshot() == before
    assert not (state.root / "new.json").exists()
    assert not (state.data / "victim" / "planted").exists()


def test_declared_paths_are_all_a_plugin_reaches_beyond_its_folder(
    host: PluginHost, state: State
) -> None:
    shared = state.outside.parent / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # under a root host the plugin's own uid writes here
    caps = Capabilities(read=(str(state.outside),), write=(str(shared),))
    attacks = [
        ("read", str(state.outside)),
        ("write", str(shared / "out.txt")),
        ("write", str(state.outside)),  # declared for reading only
    ]
    outcomes = run_attacks(host, state, attacker(attacks, caps))
    assert outcomes[f"read {state.outside}"].startswith("ok: read 16 bytes")
    assert outcomes[f"write {shared / 'out.txt'}"] == "ok: written"
    assert outcomes[f"write {state.outside}"].startswith("refused")
    assert state.outside.read_text() == "the user's file\n"


def test_a_declaration_that_reaches_the_state_root_is_refused(
    host: PluginHost, state: State
) -> None:
    host.add(attacker([], Capabilities(write=(str(state.root.parent),))))
    reason = host.start_all()["attacker"]
    assert f"it declares access to {state.root.parent}" in reason
    assert "host's private files" in reason


# -- channels -----------------------------------------------------------------------------------


def test_the_control_socket_is_out_of_a_plugins_reach(host: PluginHost, state: State) -> None:
    asked: list[object] = []
    server = ControlServer(
        state.root / "control.sock", lambda req: asked.append(req), plugin_of=host.plugin_of
    )
    server.start()
    try:
        outcomes = run_attacks(host, state, attacker([("control", str(server.path))]))
    finally:
        server.close()
    assert outcomes[f"control {server.path}"].startswith("refused: FileNotFoundError")
    assert asked == []


def test_other_plugins_sockets_are_invisible_to_a_plugin(host: PluginHost, state: State) -> None:
    outcomes = run_attacks(host, state, attacker([("other-sockets", "")]))
    assert outcomes["other-sockets "] == "refused: no other plugin's socket is visible"


def host_services_socket(host: PluginHost, name: str) -> str:
    process = host.get(name).process
    assert process is not None and process.socket_dir is not None
    found = sorted(Path(process.socket_dir).glob("host-*.sock"))
    assert found, f"plugin {name} has no host-services socket"
    return str(found[0])


def test_a_host_services_socket_serves_only_its_plugin(
    host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    host.add(victim(privileged=True))
    assert host.start_all() == {}
    path = host_services_socket(host, "victim")
    # this test's process may open the path (it is the host's uid), and is still refused
    with grpc.insecure_channel(f"unix:{path}") as channel:
        stub = plugins_pb2_grpc.PluginManagerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListPlugins(plugins_pb2.ListPluginsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "is not a process of the plugin" in caplog.text
    assert_still_answering_alone(host)


def assert_still_answering_alone(host: PluginHost) -> None:
    conn = network_pb2.Connection(id="c-block")
    conn.entity.domain = "block.test."
    assert host.decide(conn).verdict == network_pb2.VERDICT_BLOCK


# -- network ------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.5)
    yield sock
    sock.close()


def accepted(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def test_no_network_for_a_plugin_that_did_not_declare_it(
    host: PluginHost, state: State, listener: socket.socket
) -> None:
    port = str(listener.getsockname()[1])
    outcomes = run_attacks(host, state, attacker([("tcp", port)]))
    assert outcomes[f"tcp {port}"].startswith("refused")
    assert not accepted(listener)


def test_a_plugin_that_declared_network_reaches_it(
    host: PluginHost, state: State, listener: socket.socket
) -> None:
    port = str(listener.getsockname()[1])
    outcomes = run_attacks(host, state, attacker([("tcp", port)], Capabilities(network=("any",))))
    assert outcomes[f"tcp {port}"] == "ok: connected"
    assert accepted(listener)


def test_a_plugin_that_declared_other_tcp_ports_cannot_connect_to_this_one(
    host: PluginHost, state: State, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    caps = Capabilities(network=(f"tcp:{port + 1}", "udp:53"))
    outcomes = run_attacks(host, state, attacker([("tcp", str(port))], caps))
    assert outcomes[f"tcp {port}"].startswith("refused: PermissionError")
    assert not accepted(listener)
    enforced = host.get("attacker").process.enforced  # type: ignore[union-attr]
    assert enforced is not None and enforced.network == (
        f"host network: TCP connect to {port + 1} only, no host abstract sockets (Landlock); "
        "UDP 53 declared, UDP ports not enforced (Landlock has no UDP rules)"
    )


def test_a_plugin_that_declared_its_tcp_port_connects(
    host: PluginHost, state: State, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    caps = Capabilities(network=(f"tcp:{port}",))
    outcomes = run_attacks(host, state, attacker([("tcp", str(port))], caps))
    assert outcomes[f"tcp {port}"] == "ok: connected"
    assert accepted(listener)


def test_a_plugin_with_network_reaches_no_abstract_socket_of_the_host(
    host: PluginHost, state: State
) -> None:
    name = f"pm-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen(1)
        server.settimeout(0.5)
        caps = Capabilities(network=("any",))
        outcomes = run_attacks(host, state, attacker([("abstract", name)], caps))
        assert outcomes[f"abstract {name}"].startswith("refused: PermissionError")
        assert not accepted(server)


# -- processes ----------------------------------------------------------------------------------


def running_with(marker: str) -> list[int]:
    """The live grandchildren the attacker's `spawn` started with `marker` (the attacker's
    own command line holds the marker too, in its list of attacks, but not as an argument)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"\0{marker}\0".encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def test_a_plugin_that_did_not_declare_processes_cannot_start_one(
    host: PluginHost, state: State
) -> None:
    marker = f"pm-marker-{uuid.uuid4().hex}"
    outcomes = run_attacks(host, state, attacker([("spawn", marker)]))
    assert outcomes[f"spawn {marker}"].startswith("refused: PermissionError")
    assert running_with(marker) == []


def test_a_setsid_grandchild_ends_when_its_plugin_is_stopped(
    host: PluginHost, state: State
) -> None:
    marker = f"pm-marker-{uuid.uuid4().hex}"
    caps = Capabilities(processes=True)
    outcomes = run_attacks(host, state, attacker([("spawn", marker)], caps))
    assert outcomes[f"spawn {marker}"].startswith("ok: started pid")
    assert wait_for(lambda: running_with(marker), timeout=5)
    host.stop("attacker")
    assert wait_for(lambda: not running_with(marker), timeout=5)
    assert_still_answering_alone(host)


def test_a_plugin_cannot_signal_the_host(host: PluginHost, state: State) -> None:
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGUSR1, note)
    try:
        outcomes = run_attacks(host, state, attacker([("kill", str(os.getpid()))]))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert outcomes[f"kill {os.getpid()}"].startswith("refused")
    assert received == []


def test_a_plugin_cannot_take_unbounded_memory(host: PluginHost, state: State) -> None:
    outcomes = run_attacks(host, state, attacker([("memory", str(2 << 30))]))
    assert outcomes[f"memory {2 << 30}"] == "refused: MemoryError: "


# -- uids ---------------------------------------------------------------------------------------


def test_names_chosen_to_collide_still_get_uids_of_their_own() -> None:
    seen: dict[int, str] = {}
    index = 0
    while (uid := uid_for(f"p{index}")) not in seen:  # a birthday search: ~1,300 names
        seen[uid] = f"p{index}"
        index += 1
    first, second = seen[uid], f"p{index}"
    host = PluginHost(HostServices())
    host.add(PluginSpec(name=first, argv=("true",), types=("decider",)))
    host.add(PluginSpec(name=second, argv=("true",), types=("decider",)))
    assert host._uids[first] == uid
    assert host._uids[second] != uid


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root host gives plugins uids")
def test_under_a_root_host_each_plugin_runs_under_its_own_unprivileged_uid(
    host: PluginHost, state: State
) -> None:
    run_attacks(host, state, attacker([]))
    uids = {}
    for name in ("victim", "attacker"):
        process = host.get(name).process
        assert process is not None and process.server_pid is not None
        status = Path(f"/proc/{process.server_pid}/status").read_text()
        uids[name] = int(next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1])
    assert 0 not in uids.values() and uids["victim"] != uids["attacker"]


# -- policy -------------------------------------------------------------------------------------


@pytest.fixture
def no_bubblewrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH with util-linux's tools and this Python, without bubblewrap."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("prlimit", "setpriv"):
        found = shutil.which(name)
        assert found is not None
        (tools / name).symlink_to(found)
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}:{tools}")


@pytest.mark.usefixtures("no_bubblewrap")
def test_required_refuses_a_plugin_whose_sandbox_cannot_be_set_up(
    host: PluginHost, state: State
) -> None:
    host.add(victim())
    assert host.start_all() == {
        "victim": "plugin victim cannot start: its sandbox cannot be set up because "
        'bubblewrap (bwrap) is not installed (host.json "sandbox" is "required")'
    }


@pytest.mark.usefixtures("no_bubblewrap")
def test_best_effort_runs_unconfined_says_so_and_still_gates_the_channels(
    state: State, caplog: pytest.LogCaptureFixture
) -> None:
    host = make_host(state, mode="best-effort")
    control = ControlServer(
        state.root / "control.sock", lambda req: "answered", plugin_of=host.plugin_of
    )
    control.start()
    try:
        outcomes = run_attacks(
            host, state, attacker([("control", str(control.path)), ("other-sockets", "")])
        )
        process = host.get("attacker").process
        assert process is not None
        enforced = process.enforced
    finally:
        control.close()
        host.stop_all()
    assert enforced is not None and not enforced.confined
    assert enforced.reason == "bubblewrap (bwrap) is not installed"
    assert enforced.filesystem.startswith("UNCONFINED")
    loud, quiet = sandboxes([{"name": "attacker", "sandbox": enforced.to_json()}])
    assert (loud, quiet) == (
        ["WARNING: plugin attacker runs UNCONFINED: bubblewrap (bwrap) is not installed"],
        [],
    )
    assert outcomes[f"control {control.path}"] == (
        'refused: {"ok": false, "error": "a process of plugin attacker may not use the '
        "host's control socket\"}"
    )
    assert outcomes["other-sockets "].endswith("sockets seen, none answered")
    assert "refused a connection: pid" in caplog.text


def test_the_gate_never_follows_a_link_the_plugin_put_in_its_socket_folder(
    tmp_path: Path,
) -> None:
    target = tmp_path / "host-owned"
    target.write_text("root's file\n")
    target.chmod(0o600)
    before = target.stat()
    folder = tmp_path / "sockets"  # the plugin's own socket folder
    folder.mkdir()
    (folder / "host-1.sock").symlink_to(target)  # planted where the gate will listen
    inner = tempfile.mkdtemp(prefix="pm-plugins-hs-")
    uid = 2_999_999 if os.geteuid() == 0 else os.getuid()
    gate = PeerGate("victim", str(folder / "host-1.sock"), os.path.join(inner, "s"), bool, uid)
    try:
        gate.start()
        info = os.lstat(folder / "host-1.sock")
        assert stat.S_ISSOCK(info.st_mode) and info.st_uid == uid
        after = target.stat()
        assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    finally:
        gate.close()
        shutil.rmtree(inner, ignore_errors=True)


@pytest.mark.parametrize("how", ["link", "parent-link"])
def test_a_declared_path_that_leads_through_a_symlink_is_refused(
    host: PluginHost, state: State, how: str
) -> None:
    shared = state.outside.parent / "shared"
    shared.mkdir()
    if how == "link":  # the declared path itself is a link to the state root
        declared = shared / "sub"
        declared.symlink_to(state.root)
    else:  # a folder on the way is a link
        (shared / "hop").symlink_to(state.root)
        declared = shared / "hop" / "trust.json"
    host.add(attacker([("read", str(declared))], Capabilities(read=(str(declared),))))
    reason = host.start_all()["attacker"]
    assert reason == (
        f"plugin attacker cannot start: its declared path {declared} leads through a symlink "
        f"(to {os.path.realpath(declared)}); declare the real path"
    )


def test_a_path_declared_inside_a_writable_declared_folder_is_refused(
    host: PluginHost, state: State
) -> None:
    shared = state.outside.parent / "shared"
    (shared / "sub").mkdir(parents=True)
    caps = Capabilities(write=(str(shared),), read=(str(shared / "sub"),))
    host.add(attacker([], caps))
    assert host.start_all()["attacker"] == (
        f"plugin attacker cannot start: it declares {shared / 'sub'} inside {shared}, which "
        "it may write (it could turn the inner path into a link to anywhere)"
    )


def test_the_data_folder_cannot_be_declared(host: PluginHost, state: State) -> None:
    data = state.data / "attacker"
    host.add(attacker([], Capabilities(read=(str(data / "x"),))))
    reason = host.start_all()["attacker"]
    assert reason.startswith(f"plugin attacker cannot start: it declares access to {data}/x")


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root host makes cgroups")
def test_memory_no_rlimit_counts_is_bounded_by_the_plugins_cgroup(state: State) -> None:
    settings = SandboxSettings(protected=(str(state.root),), memory=256 << 20)
    host = PluginHost(HostServices(), base_directory=str(state.data), sandbox=settings)
    try:
        host.add(victim())
        host.add(attacker([("memfd", str(512 << 20))]))
        failed = host.start_all()  # the attack runs in Configure: the start itself fails
        assert failed["attacker"] == (  # the OOM killer's SIGKILL, not how the stream ended
            "plugin attacker died during Configure (its process: killed by signal SIGKILL)"
        )
        report = state.data / "attacker" / "attacks.json"
        assert not report.exists()  # the kernel ended it before it could hold 512 MiB
        victim_pid = host.get("victim").process.server_pid  # type: ignore[union-attr]
        assert "pm-plugin-" in Path(f"/proc/{victim_pid}/cgroup").read_text()
        assert_still_answering_alone(host)
        process = host.get("victim").process
        assert process is not None and process.enforced is not None
        assert "cgroup: 256 MiB memory in all" in process.enforced.limits
    finally:
        host.stop_all()


def test_the_host_connects_to_a_socket_the_plugin_can_no_longer_rename(host: PluginHost) -> None:
    host.add(victim())
    assert host.start_all() == {}
    process = host.get("victim").process
    assert process is not None and process.handshake is not None and process.socket_dir
    address = process.handshake.address  # moved out of the plugin's socket folder
    assert not address.startswith(process.socket_dir)
    assert stat.S_ISSOCK(os.lstat(address).st_mode)
    assert os.stat(os.path.dirname(address)).st_mode & 0o777 == 0o700
    assert_still_answering_alone(host)


def test_a_state_root_reached_through_a_link_is_private_under_its_real_name(
    state: State, tmp_path: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(state.root)  # the host names its state root through a link
    settings = SandboxSettings(protected=(str(alias),))
    host = PluginHost(HostServices(), base_directory=str(alias / "data"), sandbox=settings)
    try:
        secret = state.root / "trust.json"  # its real name: no link on the way
        host.add(attacker([("read", str(secret))], Capabilities(read=(str(secret),))))
        reason = host.start_all()["attacker"]
        assert reason.startswith(f"plugin attacker cannot start: it declares access to {secret}")
    finally:
        host.stop_all()
