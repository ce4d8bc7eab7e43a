"""Our host, Go plugins: pm-plugins' `PluginHost` runs the fallback Go plugins (go-plugin v1.5.1's
server with a framework reproducing PR #834's, see gobuild) and gets the answers the PR's own
host gets from them.

Each Go plugin is started exactly as a Python one (`PluginSpec` with the executable as argv);
what differs is only what is on the other end of the socket. The services plugin records what
it saw of our host services in `<base_directory>/services-<name>.json` (see
`go/plugins/services/main.go`); where our host is stricter than the PR's (config scoping) the
tests say so.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host.runtime import PluginHost, PluginSpec, PluginState
from host.services.backchannel import HostServices
from loader.errors import LoaderError
from pm_plugin.wire.portmaster import config_pb2, network_pb2, resolver_pb2
from tests.conftest import wait_for
from tests.interop import gobuild

if not gobuild.go_available():
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but 'go' is not on PATH: the Go interop peers cannot be built")
    pytest.skip(
        "'go' is not on PATH: the Go interop peers (go-plugin v1.5.1 fallback) cannot be built",
        allow_module_level=True,
    )

TYPE_A, TYPE_TXT, TYPE_AAAA, TYPE_MX, TYPE_ANY = 1, 16, 28, 15, 255
GO_NAME = "interop.example."
GO_A = bytes([192, 0, 2, 10])
GO_AAAA = bytes.fromhex("20010db8000000000000000000000010")
GO_TXT = b"hello from go"


@pytest.fixture(scope="module")
def peers() -> dict[str, Path]:
    return gobuild.build_peers()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    h = PluginHost(HostServices(), base_directory=str(tmp_path), handshake_timeout=5.0)
    yield h
    h.stop_all()


def go_spec(
    peers: dict[str, Path],
    binary: str,
    *,
    name: str | None = None,
    types: tuple[str, ...] = (),
    static_config: dict[str, Any] | None = None,
    privileged: bool = False,
) -> PluginSpec:
    return PluginSpec(
        name=name or binary,
        argv=(str(peers[binary]),),
        types=types,
        static_config=json.dumps(static_config).encode() if static_config is not None else b"",
        privileged=privileged,
    )


def conn(domain: str, binary: str = "/usr/bin/curl", cid: str = "c1") -> network_pb2.Connection:
    c = network_pb2.Connection(id=cid)
    c.entity.domain = domain
    c.entity.ip = "198.51.100.7"
    c.entity.port = 443
    c.process.binary_path = binary
    return c


def question(name: str, qtype: int) -> resolver_pb2.DNSQuestion:
    q = resolver_pb2.DNSQuestion(name=name, type=qtype)
    setattr(q, "class", 1)  # `class` is a Python keyword
    return q


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- decider -------------------------------------------------------------------------------


def test_fallback_our_host_runs_go_decider(
    host: PluginHost, peers: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pm_plugins.plugin.decider")
    host.add(go_spec(peers, "decider", types=("decider",)))
    assert host.start_all() == {}
    # confined as every plugin is: no network, no child processes, own PID namespace
    process = host.get("decider").process
    assert process is not None and process.enforced is not None
    assert process.enforced.confined and process.enforced.network.startswith("none")
    assert process.enforced.processes.startswith("no child processes; own PID namespace")
    assert process.server_pid is not None and process.server_pid != process.pid

    for domain in ("example.com.", "safing.io."):
        verdict = host.decide(conn(domain))
        assert (verdict.verdict, verdict.reason, verdict.plugin) == (2, "allowed", "decider")
    # Anything else: UNDECIDED, which the chain treats as "nobody decided".
    assert host.decide(conn("example.com.", binary="/usr/bin/firefox", cid="c2")).plugin is None
    other = host.decide(conn("other.example.", cid="c3"))
    assert (other.verdict, other.reason, other.plugin) == (0, "", None)
    assert host.counters.of("decider").errors == 0

    # Its log.Printf line reaches our log under the plugin's logger, as debug (plain lines
    # are debug, as in go-plugin), prefixed with the plugin's name.
    wanted = "ignoring decision request for c3: other.example."

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().endswith(wanted)]

    assert wait_for(logged, 2.0), [r.getMessage() for r in caplog.records]
    (record,) = logged()
    assert record.name == "pm_plugins.plugin.decider"
    assert record.levelno == logging.DEBUG
    assert record.getMessage().startswith("[decider] ")


def test_fallback_our_host_chains_go_decider_with_others(
    host: PluginHost, peers: dict[str, Path]
) -> None:
    # Two Go deciders in one chain under different names: the first decides, a stopped one
    # leaves the chain and the next takes over.
    host.add(go_spec(peers, "decider", name="first", types=("decider",)))
    host.add(go_spec(peers, "decider", name="second", types=("decider",)))
    assert host.start_all() == {}
    assert host.decide(conn("example.com.")).plugin == "first"
    host.stop("first")
    assert host.decide(conn("example.com.")).plugin == "second"


# --- resolver ------------------------------------------------------------------------------


def test_fallback_our_host_runs_go_resolver(host: PluginHost, peers: dict[str, Path]) -> None:
    host.add(go_spec(peers, "resolver", types=("resolver",)))
    assert host.start_all() == {}

    expected = {TYPE_A: GO_A, TYPE_AAAA: GO_AAAA, TYPE_TXT: GO_TXT}
    for qtype, data in expected.items():
        answer = host.resolve(question(GO_NAME, qtype))
        assert answer is not None and answer.plugin == "resolver"
        assert answer.response.rcode == 0
        assert [
            (rr.name, rr.type, getattr(rr, "class"), rr.ttl, rr.data) for rr in answer.response.rrs
        ] == [(GO_NAME, qtype, 1, 60, data)]

    everything = host.resolve(question(GO_NAME, TYPE_ANY))
    assert everything is not None
    assert sorted((rr.type, rr.data) for rr in everything.response.rrs) == sorted(expected.items())

    # Handled without answers (a present, empty response) is not "not handled".
    mx = host.resolve(question(GO_NAME, TYPE_MX))
    assert mx is not None and mx.plugin == "resolver" and list(mx.response.rrs) == []

    # Another name: the response field is absent, so nobody handled it.
    assert host.resolve(question("elsewhere.example.", TYPE_A)) is None
    assert host.counters.of("resolver").errors == 0


# --- reporter ------------------------------------------------------------------------------


def test_fallback_our_host_runs_go_reporter(
    host: PluginHost, peers: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "reporter" / "report.jsonl"  # in its data folder (its base_directory)
    host.add(go_spec(peers, "reporter", types=("reporter",), static_config={"path": str(out)}))
    assert host.start_all() == {}

    for cid, domain, verdict in (
        ("r1", "example.com.", network_pb2.VERDICT_ACCEPT),
        ("r2", "bad.example.", network_pb2.VERDICT_BLOCK),
    ):
        reported = conn(domain, cid=cid)
        reported.verdict = verdict
        host.report(reported)

    def lines() -> list[Any]:
        text = out.read_text() if out.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    assert wait_for(lambda: len(lines()) == 2), lines()
    assert lines() == [
        {"id": "r1", "domain": "example.com.", "verdict": "VERDICT_ACCEPT"},
        {"id": "r2", "domain": "bad.example.", "verdict": "VERDICT_BLOCK"},
    ]


def test_fallback_our_host_gets_go_init_error_as_configure_error(
    host: PluginHost, peers: dict[str, Path]
) -> None:
    # Without static config the Go reporter's OnInit hook fails: Configure fails with its text.
    host.add(go_spec(peers, "reporter", types=("reporter",)))
    with pytest.raises(LoaderError, match="no static configuration available"):
        host.start("reporter")
    instance = host.get("reporter")
    assert instance.state is PluginState.FAILED
    assert "no static configuration available" in instance.reason


# --- host services -------------------------------------------------------------------------


def test_fallback_our_host_serves_go_services_plugin(
    host: PluginHost, peers: dict[str, Path], tmp_path: Path
) -> None:
    config = host.services.config
    # Another plugin's option exists: the privileged plugin reads it, the other is refused.
    config.register_option(
        "plugins/other/secret",
        config_pb2.Option(key="secret", default=config_pb2.Value(string="s3cret")),
        owner="other",
    )
    host.add(go_spec(peers, "services", name="plain"))
    host.add(go_spec(peers, "services", name="boss", privileged=True))
    assert host.start_all() == {}

    # Each plugin registers `greeting`, reads it, then watches it: once both watches are
    # open, our host changes the values.
    assert wait_for(lambda: config.open_subscriptions == 2), config.open_subscriptions
    for name in ("plain", "boss"):
        assert config.get(f"plugins/{name}/greeting").string == "hi"
        config.set(f"plugins/{name}/greeting", config_pb2.Value(string="changed"))

    # Then each creates a notification with one custom action and waits for the pick.
    center = host.services.notifications
    assert wait_for(lambda: len(center.pending()) == 2), center.pending()
    pending = {p.plugin: p for p in center.pending()}
    assert sorted(pending) == ["boss", "plain"]
    for name, notification in pending.items():
        assert notification.event_id == f"{name}:{name}:hello"
        assert notification.title == f"Hello from {name}"
        assert [(a.id, a.is_custom) for a in notification.actions] == [("ok", True)]
        center.answer(notification.event_id, "ok")
    assert center.pending() == []

    files = {name: tmp_path / name / f"services-{name}.json" for name in ("plain", "boss")}
    assert wait_for(lambda: all(path.exists() for path in files.values()), 10.0)
    plain: dict[str, Any] = json.loads(files["plain"].read_text())
    boss: dict[str, Any] = json.loads(files["boss"].read_text())

    for seen in (plain, boss):
        assert seen["errors"] == []
        assert seen["portmaster_version"] == host.host_version
        assert seen["registered"] is True
        assert seen["greeting"] == "hi"
        assert seen["watch"] == {"key": f"plugins/{seen['name']}/greeting", "value": "changed"}
        assert seen["notification_action"] == "ok"

    # Unprivileged: relative keys, no plugin manager (the Go framework gives it no client),
    # and another plugin's key is refused outright, naming the key (the PR's host would
    # silently rewrite it to plugins/plain/plugins/other/secret instead).
    assert plain["privileged"] is False and plain["read_key"] == "greeting"
    assert plain["plugin_manager"] is False and plain["plugins"] == []
    assert plain["other_secret"]["value"] is None
    refusal = plain["other_secret"]["error"]
    assert "PermissionDenied" in refusal and '"plugins/other/secret"' in refusal

    # Privileged: full keys, any key, and the plugin manager lists the host's plugins.
    assert boss["privileged"] is True and boss["read_key"] == "plugins/boss/greeting"
    assert boss["plugin_manager"] is True and boss["plugins"] == ["plain", "boss"]
    assert boss["other_secret"] == {"value": "s3cret", "error": None}

    # Our side: both options are filed under the plugins' namespaces, owned by them.
    assert config.registered_keys() == [
        "plugins/boss/greeting",
        "plugins/other/secret",
        "plugins/plain/greeting",
    ]
    # The watches ended with the Go plugins' contexts; nothing is left subscribed.
    assert wait_for(lambda: config.open_subscriptions == 0)


# --- crash and stop ------------------------------------------------------------------------


def test_fallback_our_host_notices_go_plugin_sigkill(
    host: PluginHost, peers: dict[str, Path]
) -> None:
    host.add(go_spec(peers, "decider", types=("decider",)))
    assert host.start_all() == {}
    instance = host.get("decider")
    assert instance.pid is not None
    os.kill(instance.pid, signal.SIGKILL)
    assert wait_for(lambda: instance.state is PluginState.CRASHED, 1.0)
    assert "killed by signal SIGKILL" in instance.reason
    assert host.decide(conn("example.com.")).plugin is None  # out of the chain, host fine


def test_fallback_our_host_stops_go_plugin_without_leftovers(
    host: PluginHost, peers: dict[str, Path]
) -> None:
    host.add(go_spec(peers, "decider", types=("decider",)))
    assert host.start_all() == {}
    instance = host.get("decider")
    process = instance.process
    pid = instance.pid
    assert process is not None and pid is not None and process.socket_dir is not None
    socket_dir = process.socket_dir
    assert any(Path(socket_dir).iterdir())  # the Go plugin's socket, our backchannel's

    started = time.monotonic()
    host.stop("decider")
    assert time.monotonic() - started < 2.0
    assert instance.state is PluginState.STOPPED
    assert process.exited.is_set()
    # It exited by itself on the shutdown calls (GRPCController.Shutdown), not by a signal.
    assert process.returncode == 0
    assert not pid_alive(pid)
    assert not os.path.exists(socket_dir)
    assert host.decide(conn("example.com.")).plugin is None


def test_fallback_our_host_stops_go_plugin_without_exit_warning(
    peers: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pm_plugins.plugin")
    for _ in range(8):
        h = PluginHost(HostServices(), handshake_timeout=5.0)
        try:
            h.add(go_spec(peers, "decider", types=("decider",)))
            assert h.start_all() == {}
            h.stop("decider")
        finally:
            h.stop_all()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
