"""The decision cache (issue 14, item 7): what it keys on, who it may skip, how long, and
when it forgets. The attack tests run real plugin processes (tests/fakes/plugin.py modes
gate-25 and accept-cached); the key, the cap and the chain's rules are tested as data."""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from host import decision_cache
from host.decision_cache import DEFAULT_CACHE_MAX_TTL, Answer, DecisionCache, cache_key
from host.dispatch import Counters, DeciderChain
from host.reference_host import ReferenceHost
from host.runtime import PluginHost, PluginSpec, PluginState
from host.services.backchannel import HostServices
from host.services.config import ConfigStore
from host.supervise import RestartPolicy
from loader.errors import LoaderError
from loader.home import DECISION_CACHE_MAX_TTL, Home, read_host_settings
from pm_plugin.wire.portmaster import config_pb2, network_pb2
from tests.conftest import FAKE_PLUGIN, wait_for

ACCEPT, BLOCK, UNDECIDED = 2, 3, 0
TCP, UDP = 6, 17


def conn(
    port: int = 443,
    *,
    inbound: bool = False,
    protocol: int = TCP,
    local_port: int = 0,
    domain: str = "mail.test.",
    cid: str = "c1",
) -> network_pb2.Connection:
    c = network_pb2.Connection(id=cid, inbound=inbound, ip_protocol=protocol, local_port=local_port)
    c.entity.domain, c.entity.ip, c.entity.port = domain, "192.0.2.25", port
    c.entity.protocol = protocol
    c.process.binary_path = "/usr/bin/curl"
    return c


# -- the key ---------------------------------------------------------------------------------

#: One different value per field a decider sees (dotted path from Connection).
DIFFERENT: list[tuple[str, object]] = [
    ("type", network_pb2.CONNECTION_TYPE_DNS),
    ("external", True),
    ("ip_version", network_pb2.IP_VERSION_6),
    ("inbound", True),
    ("ip_protocol", UDP),
    ("local_ip", "10.0.0.2"),
    ("local_port", 25),
    ("tunneled", True),
    ("verdict", network_pb2.VERDICT_BLOCK),
    ("entity.protocol", UDP),
    ("entity.port", 25),
    ("entity.domain", "other.test."),
    ("entity.reverse_domain", "rev.test."),
    ("entity.cnames", ["alias.test."]),
    ("entity.ip", "192.0.2.26"),
    ("entity.scope", network_pb2.IP_SCOPE_GLOBAL),
    ("entity.country", "DE"),
    ("entity.coordinates.accuracy_radius", 10),
    ("entity.coordinates.latitude", 48.5),
    ("entity.coordinates.longitude", 9.25),
    ("entity.asn", 64500),
    ("entity.as_owner", "Example AS"),
    ("process.name", "wget"),
    ("process.profile", "other-profile"),
    ("process.binary_path", "/usr/bin/wget"),
    ("process.command_line", "curl --insecure"),
    ("process.process_id", 4242),
    ("process.source", "other-source"),
]
#: Fields left out of the key, on purpose: they differ for every connection.
LEFT_OUT = {"id", "started"}


def with_field(path: str, value: object) -> network_pb2.Connection:
    c = conn()
    *parents, leaf = path.split(".")
    target = c
    for part in parents:
        target = getattr(target, part)
    if isinstance(value, list):
        getattr(target, leaf).extend(value)
    else:
        setattr(target, leaf, value)
    return c


def leaf_paths(descriptor: Descriptor, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            paths |= leaf_paths(f.message_type, f"{prefix}{f.name}.")
        else:
            paths.add(prefix + f.name)
    return paths


@pytest.mark.parametrize(("path", "value"), DIFFERENT, ids=[p for p, _ in DIFFERENT])
def test_connections_differing_in_one_field_share_no_cache_entry(path: str, value: object) -> None:
    base, other = conn(), with_field(path, value)
    assert cache_key(base) != cache_key(other)
    cache = DecisionCache()
    cache.put(cache_key(base), "p", Answer(ACCEPT, "ok", 60), cache.stamp())
    assert cache.get(cache_key(base), "p") is not None
    assert cache.get(cache_key(other), "p") is None


def test_the_key_covers_every_field_of_the_connection() -> None:
    """A field added to network.proto fails here until the key (or LEFT_OUT) names it."""
    assert leaf_paths(network_pb2.Connection.DESCRIPTOR) == {p for p, _ in DIFFERENT} | LEFT_OUT


def test_id_and_started_do_not_split_the_cache() -> None:
    a, b = conn(cid="a"), conn(cid="b")
    b.started = 123456789
    assert cache_key(a) == cache_key(b)


# -- the cap -----------------------------------------------------------------------------------


def test_the_host_caps_a_decider_s_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(decision_cache, "time", SimpleNamespace(monotonic=lambda: now[0]))
    cache = DecisionCache(max_ttl=30)
    key = cache_key(conn())
    cache.put(key, "p", Answer(ACCEPT, "", 3600), cache.stamp())
    now[0] += 29.9
    assert cache.get(key, "p") is not None
    now[0] += 0.2
    assert cache.get(key, "p") is None


def test_a_ttl_under_the_cap_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(decision_cache, "time", SimpleNamespace(monotonic=lambda: now[0]))
    cache = DecisionCache(max_ttl=30)
    key = cache_key(conn())
    cache.put(key, "p", Answer(ACCEPT, "", 5), cache.stamp())
    now[0] += 5.1
    assert cache.get(key, "p") is None


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_the_cap_must_be_a_positive_number(bad: float) -> None:
    with pytest.raises(ValueError, match="max_ttl must be a positive number"):
        DecisionCache(max_ttl=bad)
    with pytest.raises(ValueError, match="max_ttl"):
        PluginHost(HostServices(), cache_max_ttl=bad)


def test_plugin_host_cap_default_and_override() -> None:
    assert PluginHost(HostServices()).cache.max_ttl == DEFAULT_CACHE_MAX_TTL == 300
    assert PluginHost(HostServices(), cache_max_ttl=7.5).cache.max_ttl == 7.5
    assert DECISION_CACHE_MAX_TTL == DEFAULT_CACHE_MAX_TTL  # loader.home keeps the same default


def test_host_json_decision_cache_max_ttl(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text("{}")
    assert read_host_settings(path).decision_cache_max_ttl == 300
    for text, value in [("60", 60.0), ("0.5", 0.5)]:
        path.write_text(f'{{"decisionCacheMaxTtl": {text}}}')
        assert read_host_settings(path).decision_cache_max_ttl == value
    for bad in ("0", "-5", "true", '"60"', "null", "[60]"):
        path.write_text(f'{{"decisionCacheMaxTtl": {bad}}}')
        with pytest.raises(LoaderError, match='field "decisionCacheMaxTtl" must be'):
            read_host_settings(path)


def test_reference_host_passes_the_host_json_cap(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    home.host_settings.write_text('{"decisionCacheMaxTtl": 42}')
    host = ReferenceHost(home, dev_mode=False)
    try:
        assert host.plugins.cache.max_ttl == 42
    finally:
        host.plugins.stop_all()


# -- the chain's rules, as data ----------------------------------------------------------------


@dataclass
class Member:
    """An in-process decider giving a fixed answer and counting its calls."""

    name: str
    answer: Answer
    calls: int = 0
    cache: DecisionCache | None = None  # forgotten during the call, when set

    def decide(self, connection: network_pb2.Connection, timeout: float) -> Answer:
        self.calls += 1
        if self.cache is not None:
            self.cache.forget(self.name)
        return self.answer


def test_a_later_cached_accept_never_skips_an_earlier_decider() -> None:
    gate = Member("gate", Answer(UNDECIDED))
    late = Member("late", Answer(ACCEPT, "ok", 60))
    chain = DeciderChain([gate, late], Counters())
    assert chain.decide(conn()).cached is False
    again = chain.decide(conn())
    assert (again.verdict, again.plugin, again.cached) == (ACCEPT, "late", True)
    assert (gate.calls, late.calls) == (2, 1)  # the gate is asked every time
    gate.answer = Answer(BLOCK, "closed now")
    assert chain.decide(conn()).verdict == BLOCK


def test_cacheable_undecided_is_skipped_without_a_call() -> None:
    gate = Member("gate", Answer(UNDECIDED, "", 60))
    late = Member("late", Answer(ACCEPT, "ok", 60))
    chain = DeciderChain([gate, late], Counters())
    chain.decide(conn())
    assert chain.decide(conn()).cached
    assert (gate.calls, late.calls) == (1, 1)


def test_forget_drops_one_plugin_s_answers_only() -> None:
    gate = Member("gate", Answer(UNDECIDED, "", 60))
    late = Member("late", Answer(ACCEPT, "ok", 60))
    chain = DeciderChain([gate, late], Counters())
    chain.decide(conn())
    chain.cache.forget("late")
    chain.decide(conn())
    assert (gate.calls, late.calls) == (1, 2)


def test_an_answer_given_while_its_plugin_is_forgotten_is_not_reused() -> None:
    cache = DecisionCache()
    late = Member("late", Answer(ACCEPT, "ok", 60), cache=cache)
    chain = DeciderChain([late], Counters(), cache)
    chain.decide(conn())
    late.cache = None
    assert chain.decide(conn()).cached is False  # stamped before the forget: dead
    assert chain.decide(conn()).cached is True
    cache.clear()
    assert chain.decide(conn()).cached is False


def test_a_failed_call_is_never_cached() -> None:
    class Failing:
        name = "broken"

        def decide(self, connection: network_pb2.Connection, timeout: float) -> Answer:
            from host.errors import PluginCallError

            raise PluginCallError("plugin broken: decider failed")

    late = Member("late", Answer(ACCEPT, "ok", 60))
    chain = DeciderChain([Failing(), late], Counters())
    chain.decide(conn())
    chain.decide(conn())
    assert chain.counters.of("broken").calls == 2


def test_config_store_tells_listeners_of_each_change() -> None:
    store = ConfigStore()
    heard: list[tuple[str, str]] = []
    store.add_listener(lambda owner, key: heard.append((owner, key)))
    option = config_pb2.Option(default=config_pb2.Value(string="a"))
    store.register_option("plugins/p/x", option, owner="p")
    store.set("plugins/p/x", config_pb2.Value(string="b"))
    store.register_option("plugins/p/x", option, owner="p")  # same default: no change
    store.register_option(
        "plugins/p/x", config_pb2.Option(default=config_pb2.Value(string="c")), owner="p"
    )  # a value is set: the effective value stays "b"
    assert heard == [("p", "plugins/p/x")]


# -- real plugins ----------------------------------------------------------------------------


def spec(name: str, mode: str, static_config: bytes = b"") -> PluginSpec:
    argv = (sys.executable, str(FAKE_PLUGIN), mode)
    return PluginSpec(name=name, argv=argv, types=("decider",), static_config=static_config)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    h = PluginHost(
        HostServices(),
        base_directory=str(tmp_path),
        handshake_timeout=5.0,
        restart=RestartPolicy(initial_backoff=0.05, max_backoff=0.05),
    )
    yield h
    h.stop_all()


def gate_then_late(host: PluginHost, undecided_ttl: int = 0) -> None:
    static = b'{"undecided_ttl": %d}' % undecided_ttl
    host.add(spec("gate", "gate-25", static_config=static))
    host.add(spec("late", "accept-cached"))
    assert host.start_all() == {}


def test_attack_port_443_accept_cached_by_a_later_decider_does_not_open_port_25(
    host: PluginHost,
) -> None:
    """Reproduced against the chain-wide (binary, domain) cache: after one query on 443
    accepted by the later decider with a TTL, port 25 and inbound UDP 25, which the earlier
    decider blocks, came back ACCEPT from the cache."""
    gate_then_late(host)
    first = host.decide(conn(443))
    assert (first.verdict, first.plugin, first.cached) == (ACCEPT, "late", False)
    again = host.decide(conn(443, cid="c2"))
    assert (again.verdict, again.reason, again.cached) == (ACCEPT, "accept #1", True)

    smtp = host.decide(conn(25, cid="c3"))
    assert (smtp.verdict, smtp.plugin, smtp.cached) == (BLOCK, "gate", False)
    inbound = host.decide(conn(40000, inbound=True, protocol=UDP, local_port=25, cid="c4"))
    assert (inbound.verdict, inbound.plugin) == (BLOCK, "gate")
    assert host.counters.of("gate").calls == 4  # it gave no TTL: asked every time


def test_cacheable_undecided_skips_the_plugin_but_not_on_another_port(host: PluginHost) -> None:
    gate_then_late(host, undecided_ttl=60)
    host.decide(conn(443))
    assert host.decide(conn(443)).cached
    assert host.counters.of("gate").calls == 1
    assert host.decide(conn(25)).verdict == BLOCK


def test_plugin_forgets_only_its_own_cached_verdicts(host: PluginHost) -> None:
    gate_then_late(host, undecided_ttl=60)
    assert host.decide(conn(443)).reason == "accept #1"
    assert host.decide(conn(443)).cached
    assert host.decide(conn(443, domain="forget.test.")).plugin is None  # late calls forget
    fresh = host.decide(conn(443))
    assert (fresh.reason, fresh.cached) == ("accept #3", False)
    assert host.counters.of("gate").calls == 2  # the gate's cached UNDECIDED stayed


def test_a_config_change_clears_the_cache(host: PluginHost) -> None:
    host.add(spec("late", "accept-cached"))
    host.start_all()
    host.decide(conn())
    assert host.decide(conn()).cached
    host.services.config.set("plugins/late/rules", config_pb2.Value(string="new"))
    assert host.decide(conn()).cached is False


def test_stop_and_start_forget_the_plugin_s_answers(host: PluginHost) -> None:
    host.add(spec("late", "accept-cached"))
    host.start_all()
    host.decide(conn())
    assert host.decide(conn()).cached
    host.stop("late")
    assert host.decide(conn()).plugin is None
    host.start("late")
    fresh = host.decide(conn())
    assert (fresh.reason, fresh.cached) == ("accept #1", False)  # the new process answered


def test_a_restart_after_a_crash_forgets_the_plugin_s_answers(host: PluginHost) -> None:
    host.add(spec("late", "accept-cached"))
    host.start_all()
    instance = host.get("late")
    host.decide(conn())
    assert host.decide(conn()).cached
    old_pid = instance.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    assert wait_for(lambda: instance.running and instance.pid != old_pid, 10.0)
    assert instance.state is PluginState.RUNNING
    fresh = host.decide(conn())
    assert (fresh.reason, fresh.cached) == ("accept #1", False)


def test_the_cap_applies_to_a_real_plugin_s_hour_long_ttl(tmp_path: Path) -> None:
    host = PluginHost(HostServices(), base_directory=str(tmp_path), cache_max_ttl=0.3)
    try:
        host.add(spec("late", "accept-cached"))
        host.start_all()
        host.decide(conn())
        assert host.decide(conn()).cached
        assert wait_for(lambda: not host.decide(conn()).cached, 2.0)
    finally:
        host.stop_all()
