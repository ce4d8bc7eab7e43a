"""The runtime end to end: real plugin processes over real unix sockets, misbehaving on purpose."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.errors import HandshakeError, HookAbortedError
from host.peers import descends_from
from host.process import PluginProcess
from host.runtime import PluginHost, PluginSpec, PluginState
from host.services.backchannel import HostServices
from loader.capabilities import Capabilities
from loader.errors import LoaderError
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import config_pb2, network_pb2, resolver_pb2
from tests.conftest import FAKE_PLUGIN, wait_for

ALL_TYPES = ("decider", "reporter", "resolver", "hook")


def spec(name: str, mode: str = "normal", **kwargs: object) -> PluginSpec:
    return PluginSpec(
        name=name,
        argv=(sys.executable, str(FAKE_PLUGIN), mode),
        types=kwargs.pop("types", ALL_TYPES),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def conn(domain: str, binary: str = "/usr/bin/curl", cid: str = "c1") -> network_pb2.Connection:
    c = network_pb2.Connection(id=cid)
    c.entity.domain = domain
    c.process.binary_path = binary
    return c


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    h = PluginHost(HostServices(), base_directory=str(tmp_path), handshake_timeout=5.0)
    yield h
    h.stop_all()


def test_each_type_end_to_end(host: PluginHost, tmp_path: Path) -> None:
    report_path = tmp_path / "fake" / "reports.jsonl"  # in its own data folder
    static = json.dumps({"report_path": str(report_path)}).encode()
    host.add(spec("fake", static_config=static))
    assert host.start_all() == {}

    assert host.decide(conn("accept.test.")).verdict == 2
    blocked = host.decide(conn("block.test."))
    assert (blocked.verdict, blocked.reason, blocked.plugin) == (3, "blocked by fake", "fake")
    assert host.decide(conn("other.test.")).plugin is None

    answer = host.resolve(resolver_pb2.DNSQuestion(name="fake.test.", type=1))
    assert answer is not None and answer.plugin == "fake"
    assert answer.response.rrs[0].data == bytes([192, 0, 2, 1])
    empty = host.resolve(resolver_pb2.DNSQuestion(name="empty.test.", type=1))
    assert empty is not None and list(empty.response.rrs) == []  # handled, no answers
    assert host.resolve(resolver_pb2.DNSQuestion(name="nobody.test.", type=1)) is None

    entity = host.run_hook("PreAuthCheck", extensions_pb2.Entity(id="alice"))
    assert list(entity.meta.untyped_meta) == ["fake:seen"]
    with pytest.raises(HookAbortedError, match=r"PreAuthCheck was aborted by plugin fake"):
        host.run_hook("PreAuthCheck", extensions_pb2.Entity(id="refuse"))

    reported = conn("accept.test.", cid="r1")
    reported.verdict = network_pb2.VERDICT_ACCEPT
    host.report(reported)
    assert wait_for(lambda: report_path.exists() and report_path.read_text().strip())
    assert json.loads(report_path.read_text().splitlines()[0]) == {"id": "r1", "verdict": 2}


def test_slow_reporter_drops_reports_and_never_slows_decisions(host: PluginHost) -> None:
    host.add(spec("fake", types=("decider", "reporter")))
    host.start_all()
    started = time.monotonic()
    for i in range(3000):
        host.report(conn("slow.test.", cid=f"s{i}"))
    assert time.monotonic() - started < 1.0  # report() only queues
    assert host.counters.of("fake").dropped > 0
    assert host.decide(conn("accept.test.")).verdict == 2


def test_chain_runs_in_configured_order_first_decided_wins(host: PluginHost) -> None:
    host.add(spec("first", "no-extensions", types=("decider",)))
    host.add(spec("second", types=("decider",)))
    assert host.start_all() == {}
    assert host.decide(conn("accept.test.")).plugin == "first"
    host.stop("first")
    assert host.decide(conn("accept.test.")).plugin == "second"


def test_plugin_without_extensions_is_driven_through_the_pr_calls(
    host: PluginHost, tmp_path: Path
) -> None:
    report_path = tmp_path / "plain" / "reports.jsonl"
    static = json.dumps({"report_path": str(report_path)}).encode()
    host.add(spec("plain", "no-extensions", static_config=static))
    host.start_all()
    for i in range(3):  # unary ReportConnection, one call per connection
        host.report(conn("accept.test.", cid=f"u{i}"))
    assert wait_for(lambda: report_path.exists() and len(report_path.read_text().splitlines()) == 3)
    client = host.get("plain").client
    assert client is not None and not client.extensions.streamed_decider
    assert client.extensions.hook_points == frozenset()
    assert host.decide(conn("block.test.")).verdict == 3
    # hooks are our extension: a PR-only plugin is skipped, the entity passes unchanged
    assert host.run_hook("PreAuthCheck", extensions_pb2.Entity(id="x")).id == "x"


def test_streamed_decision_is_cached_per_binary_and_remote(host: PluginHost) -> None:
    host.add(spec("fake"))
    host.start_all()
    first = host.decide(conn("cache.test."))
    assert (first.verdict, first.cached) == (3, False)
    again = host.decide(conn("cache.test."))
    assert (again.verdict, again.cached) == (3, True)
    other_program = host.decide(conn("cache.test.", binary="/usr/bin/wget"))
    assert other_program.cached is False


def test_host_services_over_the_broker(host: PluginHost, tmp_path: Path) -> None:
    host.services.config.register_option(
        "core/dns",
        config_pb2.Option(key="core/dns", default=config_pb2.Value(string="1.1.1.1")),
        owner="host",
    )
    host.add(spec("plain", "services", types=("decider",)))
    host.add(spec("boss", "services", types=("decider",), privileged=True))
    assert host.start_all() == {}
    center = host.services.notifications
    assert wait_for(lambda: len(center.pending()) == 2)
    for pending in center.pending():
        center.answer(pending.event_id, "yes")
    plain_path = tmp_path / "plain" / "services-plain.json"
    boss_path = tmp_path / "boss" / "services-boss.json"
    assert wait_for(lambda: plain_path.exists() and boss_path.exists())
    plain, boss = json.loads(plain_path.read_text()), json.loads(boss_path.read_text())

    assert plain["greeting"] == "hi"
    assert plain["plugins/other/secret"].startswith("refused")
    assert "plugins/other/secret" in plain["plugins/other/secret"]
    assert plain["core/dns"].startswith("refused")
    assert plain["plugins"] is None  # unprivileged: no plugin manager
    assert plain["answer"] == "yes"

    assert boss["core/dns"] == "1.1.1.1"  # privileged reads any key
    assert boss["plugins"] == ["plain", "boss"]
    assert boss["answer"] == "yes"
    assert host.services.config.get("plugins/boss/greeting").string == "hi"


def test_crash_mid_call_is_undecided_and_noticed(host: PluginHost) -> None:
    host.add(spec("fake"))
    host.start_all()
    assert host.decide(conn("crash.test.")).plugin is None
    instance = host.get("fake")
    assert wait_for(lambda: instance.state is PluginState.CRASHED, 1.0)
    assert "exited with code 3" in instance.reason
    assert host.decide(conn("accept.test.")).plugin is None  # out of the chain, host fine


def test_sigkill_is_noticed_within_a_second(host: PluginHost) -> None:
    host.add(spec("fake"))
    host.start_all()
    instance = host.get("fake")
    assert instance.pid is not None
    os.kill(instance.pid, signal.SIGKILL)
    assert wait_for(lambda: instance.state is PluginState.CRASHED, 1.0)
    assert "killed by signal SIGKILL" in instance.reason


def test_hanging_call_hits_the_deadline_and_the_host_carries_on(host: PluginHost) -> None:
    host.add(spec("fake", "no-extensions"))
    host.start_all()
    host._deciders.timeout = 0.3
    started = time.monotonic()
    assert host.decide(conn("slow.test.")).plugin is None
    assert time.monotonic() - started < 1.5
    assert host.counters.of("fake").timeouts == 1
    assert host.decide(conn("accept.test.")).verdict == 2


def test_decision_socket_deadline_closes_the_connection_and_carries_on(host: PluginHost) -> None:
    host.add(spec("fake"))
    host.start_all()
    client = host.get("fake").client
    assert client is not None and client.decision_socket() is not None
    host._deciders.timeout = 0.3
    assert host.decide(conn("slow.test.")).plugin is None
    assert host.counters.of("fake").timeouts == 1
    assert host.decide(conn("accept.test.")).verdict == 2  # a fresh connection, not the late reply


def test_grpc_stream_carries_many_decisions_in_flight(host: PluginHost) -> None:
    host.add(spec("fake"))
    host.start_all()
    client = host.get("fake").client
    assert client is not None
    domains = ["accept.test.", "block.test.", "other.test."] * 50
    futures = client.streamed_decider().submit(*(conn(d) for d in domains))
    verdicts = [f.result(5).verdict for f in futures]
    assert verdicts == [{"accept.test.": 2, "block.test.": 3, "other.test.": 0}[d] for d in domains]
    failed = client.streamed_decider().submit(conn("error.test."))[0].result(5)
    assert "fake decider failure" in failed.error


def test_decision_socket_outside_the_plugin_directory_is_not_used(host: PluginHost) -> None:
    host.add(spec("fake"))
    host.start_all()
    client = host.get("fake").client
    assert client is not None
    assert client._checked_decision_socket("/tmp/elsewhere/decide.sock") == ""
    assert client._checked_decision_socket(client.extensions.decision_socket) != ""


def test_oversized_and_malformed_replies_are_counted_errors(host: PluginHost) -> None:
    host.add(spec("fake", "no-extensions"))
    host.start_all()
    assert host.decide(conn("big.test.")).plugin is None
    assert "oversized" in host.counters.of("fake").last_error
    assert host.resolve(resolver_pb2.DNSQuestion(name="malformed.test.", type=1)) is None
    assert "malformed" in host.counters.of("fake").last_error
    assert host.counters.of("fake").errors == 2
    assert host.decide(conn("accept.test.")).verdict == 2


def test_error_in_decider_counts_as_undecided(host: PluginHost) -> None:
    host.add(spec("fake"))
    host.start_all()
    assert host.decide(conn("error.test.")).plugin is None
    assert "fake decider failure" in host.counters.of("fake").last_error


def test_init_error_fails_configure(host: PluginHost) -> None:
    host.add(spec("fake", "crash-on-configure"))
    failed = host.start_all()
    assert "fake init failure" in failed["fake"]
    assert host.get("fake").state is PluginState.FAILED


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("no-handshake", "did not print its handshake within 1 s"),
        ("garbage-first", "'starting up, hello!\\n'"),
        ("wrong-version", "offered only 1"),
    ],
)
def test_bad_handshakes_are_refused_with_the_line(mode: str, needle: str) -> None:
    proc = PluginProcess("fake", [sys.executable, str(FAKE_PLUGIN), mode], handshake_timeout=1)
    with pytest.raises(HandshakeError) as err:
        proc.start()
    assert needle in str(err.value)
    assert proc.exited.is_set()
    assert proc.socket_dir is not None and not os.path.exists(proc.socket_dir)


@pytest.mark.parametrize("cookie", [None, "wrong"])
def test_missing_or_wrong_cookie(cookie: str | None) -> None:
    env = {"PORTMASTER_PLUGIN": cookie} if cookie else {"PORTMASTER_PLUGIN": ""}
    proc = PluginProcess("fake", [sys.executable, str(FAKE_PLUGIN)], extra_env=env)
    with pytest.raises(HandshakeError) as err:
        proc.start()
    assert "exited with code 1 before printing its handshake" in str(err.value)
    assert "started by its host" in str(err.value)


def sleeper_below(pid: int) -> int | None:
    """The fork-child fake's child (`time.sleep(120)`), found from the host's side."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid and descends_from(int(entry), {pid}):
            with contextlib.suppress(OSError):
                if b"time.sleep(120)" in Path(f"/proc/{entry}/cmdline").read_bytes():
                    return int(entry)
    return None


def test_stop_ends_children_and_escalates_to_sigkill(host: PluginHost, tmp_path: Path) -> None:
    host.add(spec("forker", "fork-child", capabilities=Capabilities(processes=True)))
    host.add(spec("stubborn", "slow-shutdown"))
    host.stop_grace = 0.5
    assert host.start_all() == {}
    forker = host.get("forker")
    assert forker.pid is not None
    assert wait_for(lambda: sleeper_below(forker.pid or 0) is not None)
    child_pid = sleeper_below(forker.pid)
    assert child_pid is not None
    started = time.monotonic()
    host.stop_all()
    assert time.monotonic() - started < 10
    assert (
        not os.path.exists(f"/proc/{child_pid}")
        or "Z" in Path(f"/proc/{child_pid}/stat").read_text().split()[2]
    )
    for instance in host.plugins():
        assert instance.process is not None and instance.process.exited.is_set()
        assert not os.path.exists(instance.process.socket_dir or "/nonexistent")


def test_flooding_stderr_does_not_block(host: PluginHost) -> None:
    host.add(spec("flood", "flood-stderr"))
    assert host.start_all() == {}
    assert host.decide(conn("accept.test.")).verdict == 2


def test_plugin_manager_start_stop_from_the_host(host: PluginHost) -> None:
    host.add(spec("fake"))
    host.add(spec("later", disable_autostart=True))
    host.start_all()
    assert host.get("later").state is PluginState.STOPPED
    host.start_plugin("later")
    assert wait_for(lambda: host.get("later").running)
    host.stop_plugin("later")
    assert wait_for(lambda: host.get("later").state is PluginState.STOPPED)
    with pytest.raises(LookupError):
        host.start_plugin("nope")


def test_start_failure_does_not_stop_others(host: PluginHost) -> None:
    host.add(spec("good"))
    host.add(spec("bad", "wrong-version"))
    failed = host.start_all()
    assert list(failed) == ["bad"] and host.get("good").running
    with pytest.raises(LoaderError):
        host.start("bad")
