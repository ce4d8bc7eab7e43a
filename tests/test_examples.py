"""The example plugins as the host runs them: real processes, driven through PluginHost."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import sqlite3
import stat
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version

from host.runtime import PluginHost, PluginSpec
from host.services.backchannel import HostServices
from loader.capabilities import parse_capabilities
from loader.errors import LoaderError
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import config_pb2, network_pb2, resolver_pb2
from tests.conftest import EXAMPLES, wait_for

PLUGINS = {
    "hosts": ("resolver",),
    "allowlist": ("decider",),
    "fail2lock": ("hook",),
    "history": ("reporter",),
    "seed_decider": ("decider",),
}
ACCEPT, UNDECIDED = network_pb2.VERDICT_ACCEPT, network_pb2.VERDICT_UNDECIDED
TYPE_A, TYPE_PTR, TYPE_AAAA = 1, 12, 28


def spec(name: str, config: object = None) -> PluginSpec:
    """The example as the host runs it, confined to the capabilities its plugin.toml declares."""
    declared = tomllib.loads((EXAMPLES / name / "plugin.toml").read_text())
    return PluginSpec(
        name=name,
        argv=(str(EXAMPLES / name / "plugin"),),
        types=PLUGINS[name],
        static_config=json.dumps(config).encode() if config is not None else b"",
        capabilities=parse_capabilities(declared.get("capabilities", {}), where=name),
    )


def conn(
    domain: str,
    binary: str = "/usr/bin/curl",
    cid: str = "c1",
    verdict: network_pb2.Verdict = UNDECIDED,
) -> network_pb2.Connection:
    c = network_pb2.Connection(id=cid, verdict=verdict)
    c.entity.domain = domain
    c.process.binary_path = binary
    return c


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    h = PluginHost(HostServices(), base_directory=str(tmp_path), handshake_timeout=10.0)
    yield h
    h.stop_all()


def start(host: PluginHost, name: str, config: object = None) -> None:
    host.add(spec(name, config))
    assert host.start_all() == {}


# -- the packages ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_package_layout(name: str) -> None:
    manifest = tomllib.loads((EXAMPLES / name / "plugin.toml").read_text())
    assert set(manifest) - {"capabilities"} == {
        "name",
        "version",
        "description",
        "publisher",
        "types",
        "requires",
        "executable",
    }
    assert manifest["name"] == name
    Version(manifest["version"])  # PEP 440
    assert tuple(manifest["types"]) == PLUGINS[name]
    assert isinstance(manifest["requires"], dict)
    executable = EXAMPLES / name / manifest["executable"]
    assert stat.S_IMODE(executable.stat().st_mode) == 0o755
    assert executable.read_text().startswith('#!/usr/bin/env python3\n"""')


# -- hosts ----------------------------------------------------------------------------------

HOSTS = """\
# a comment line
127.0.0.1     localhost
192.0.2.10    Printer.LAN printer   # the office printer
2001:db8::10  printer.lan
198.51.100.7  nas.lan
not-an-ip     broken.lan
"""


def ask(host: PluginHost, name: str, qtype: int) -> resolver_pb2.DNSResponse | None:
    resolution = host.resolve(resolver_pb2.DNSQuestion(name=name, type=qtype))
    if resolution is None:
        return None
    assert resolution.plugin == "hosts"
    return resolution.response


def test_hosts_answers_from_the_file(host: PluginHost, tmp_path: Path) -> None:
    hosts_file = tmp_path / "hosts" / "hosts"  # in its data folder, which it may read
    hosts_file.parent.mkdir()
    hosts_file.write_text(HOSTS)
    start(host, "hosts", {"path": str(hosts_file)})

    a = ask(host, "PRINTER.lan.", TYPE_A)  # names are case-insensitive
    assert a is not None and a.rcode == 0
    assert [(rr.type, rr.data) for rr in a.rrs] == [(TYPE_A, bytes([192, 0, 2, 10]))]
    assert a.rrs[0].name == "PRINTER.lan."
    aaaa = ask(host, "printer.lan.", TYPE_AAAA)
    assert aaaa is not None
    assert [rr.data for rr in aaaa.rrs] == [ipaddress.IPv6Address("2001:db8::10").packed]
    assert ask(host, "printer.", TYPE_A) is not None  # the second name on the line

    ptr4 = ask(host, "10.2.0.192.in-addr.arpa.", TYPE_PTR)
    assert ptr4 is not None
    assert [(rr.type, rr.data) for rr in ptr4.rrs] == [(TYPE_PTR, b"printer.lan.")]
    ptr6 = ask(host, ipaddress.ip_address("2001:db8::10").reverse_pointer + ".", TYPE_PTR)
    assert ptr6 is not None and [rr.data for rr in ptr6.rrs] == [b"printer.lan."]

    # known name without a record of this type: handled, NOERROR, no answers
    no_v6 = ask(host, "nas.lan.", TYPE_AAAA)
    assert no_v6 is not None and no_v6.rcode == 0 and list(no_v6.rrs) == []
    # unknown names and addresses, and the line with a bad address: left to the next resolver
    assert ask(host, "unknown.lan.", TYPE_A) is None
    assert ask(host, "broken.lan.", TYPE_A) is None
    assert ask(host, "1.2.0.192.in-addr.arpa.", TYPE_PTR) is None


def test_hosts_picks_up_edits_without_a_restart(host: PluginHost, tmp_path: Path) -> None:
    hosts_file = tmp_path / "hosts" / "hosts"  # in its data folder, which it may read
    hosts_file.parent.mkdir()
    hosts_file.write_text(HOSTS)
    start(host, "hosts", {"path": str(hosts_file)})
    pid = host.get("hosts").pid
    assert ask(host, "new.lan.", TYPE_A) is None

    with hosts_file.open("a") as out:  # edited in place
        out.write("203.0.113.5 new.lan\n")
    assert wait_for(lambda: ask(host, "new.lan.", TYPE_A) is not None, 2.0)
    answer = ask(host, "new.lan.", TYPE_A)
    assert answer is not None and answer.rrs[0].data == bytes([203, 0, 113, 5])

    replacement = tmp_path / "hosts.new"  # replaced atomically, as editors do
    replacement.write_text("203.0.113.6 other.lan\n")
    os.replace(replacement, hosts_file)
    assert wait_for(lambda: ask(host, "new.lan.", TYPE_A) is None, 2.0)
    assert ask(host, "other.lan.", TYPE_A) is not None
    assert host.get("hosts").pid == pid  # the same process all along


# -- allowlist and the seed decider --------------------------------------------------------


def logged(caplog: pytest.LogCaptureFixture, plugin: str, text: str) -> bool:
    return any(
        r.name == f"pm_plugins.plugin.{plugin}" and text in r.getMessage() for r in caplog.records
    )


def test_allowlist_default_rules(host: PluginHost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pm_plugins.plugin.allowlist")
    start(host, "allowlist")

    allowed = host.decide(conn("example.com."))
    assert (allowed.verdict, allowed.reason, allowed.plugin) == (ACCEPT, "allowed", "allowlist")
    assert host.decide(conn("safing.io.")).verdict == ACCEPT
    assert host.decide(conn("example.com.")).cached  # the streamed verdict carried a TTL

    other = host.decide(conn("example.com.", binary="/usr/bin/firefox", cid="c2"))
    assert (other.verdict, other.plugin) == (UNDECIDED, None)
    needle = "ignoring decision request for c2: example.com."
    assert wait_for(lambda: logged(caplog, "allowlist", needle))
    record = next(r for r in caplog.records if needle in r.getMessage())
    assert record.levelno == logging.INFO and "[allowlist]" in record.getMessage()


def test_allowlist_rules_change_at_run_time(host: PluginHost) -> None:
    start(host, "allowlist")
    store = host.services.config
    assert store.get("plugins/allowlist/rules").string_array == [
        "/usr/bin/curl example.com.",
        "/usr/bin/curl safing.io.",
    ]
    assert host.decide(conn("example.com.")).verdict == ACCEPT  # now cached by the host
    # the watch starts in the background; a change made before it is in place is not sent
    assert wait_for(lambda: store.open_subscriptions >= 1)

    store.set(
        "plugins/allowlist/rules",
        config_pb2.Value(string_array=["/usr/bin/firefox example.com.", "/opt/My App/app Ex.ORG"]),
    )
    firefox = conn("example.com.", binary="/usr/bin/firefox")
    assert wait_for(lambda: host.decide(firefox).verdict == ACCEPT, 3.0)
    spaced = host.decide(conn("ex.org.", binary="/opt/My App/app"))
    assert (spaced.verdict, spaced.reason) == (ACCEPT, "allowed")

    # The config change cleared the host's cache: curl's cached ACCEPT is gone.
    assert host.decide(conn("example.com.")).verdict == UNDECIDED


def test_seed_decider_verdicts(host: PluginHost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pm_plugins.plugin.seed_decider")
    start(host, "seed_decider")
    for domain in ("example.com.", "safing.io."):
        verdict = host.decide(conn(domain))
        assert (verdict.verdict, verdict.reason, verdict.plugin) == (
            ACCEPT,
            "allowed",
            "seed_decider",
        )
    assert host.decide(conn("example.org.")).plugin is None
    assert host.decide(conn("example.com.", binary="/usr/bin/wget", cid="w1")).plugin is None
    needle = "ignoring decision request for w1: example.com."
    assert wait_for(lambda: logged(caplog, "seed_decider", needle))


# -- fail2lock --------------------------------------------------------------------------------


def auth(host: PluginHost, who: str, *meta: str) -> extensions_pb2.Entity:
    entity = extensions_pb2.Entity(id=who, meta=extensions_pb2.EntityMeta(untyped_meta=meta))
    return host.run_hook("PreAuthCheck", entity)


def test_fail2lock_locks_notifies_once_and_resets(host: PluginHost) -> None:
    start(host, "fail2lock")  # defaults: 3 failures within 300 s
    notifications = host.services.notifications

    for _ in range(3):
        assert not auth(host, "bob").meta.locked
    assert auth(host, "bob").meta.locked
    assert not auth(host, "alice").meta.locked  # counted per entity
    assert wait_for(lambda: notifications.shown())
    assert auth(host, "bob").meta.locked  # still locked, but told only once
    time.sleep(0.3)
    (shown,) = notifications.shown()
    assert shown.plugin == "fail2lock" and "bob" in shown.message

    reset = auth(host, "bob", "other:kept", "fail2lock:RESET")
    assert list(reset.meta.untyped_meta) == ["other:kept"] and not reset.meta.locked
    for _ in range(3):
        assert not auth(host, "bob").meta.locked
    assert auth(host, "bob").meta.locked
    assert wait_for(lambda: len(notifications.shown()) == 2)  # a new lock, a new notice


def test_fail2lock_successful_login_clears_failures(host: PluginHost) -> None:
    start(host, "fail2lock", {"allowed_fails": 2, "interval_seconds": 60})
    for _ in range(2):
        assert not auth(host, "carol").meta.locked
    host.run_hook("PostAuthCheck", extensions_pb2.Entity(id="carol"))
    for _ in range(2):
        assert not auth(host, "carol").meta.locked
    assert auth(host, "carol").meta.locked


def test_fail2lock_refuses_a_bad_config(host: PluginHost) -> None:
    host.add(spec("fail2lock", {"allowed_fails": 0}))
    with pytest.raises(LoaderError, match="allowed_fails"):
        host.start("fail2lock")


# -- history ----------------------------------------------------------------------------------


def rows(path: Path) -> list[tuple[object, ...]]:
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT id, binary, domain, ip, port, verdict FROM connections ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def test_history_writes_reported_connections(host: PluginHost, tmp_path: Path) -> None:
    start(host, "history")
    database = tmp_path / "history" / "history.sqlite"  # the default: in its data folder
    accepted = conn("example.com.", cid="h1", verdict=ACCEPT)
    accepted.entity.ip, accepted.entity.port = "93.184.215.14", 443
    blocked = conn("tracker.test.", binary="/usr/bin/firefox", cid="h2")
    blocked.verdict = network_pb2.VERDICT_BLOCK
    host.report(accepted)
    host.report(blocked)

    assert wait_for(lambda: len(rows(database)) == 2)
    assert rows(database) == [
        ("h1", "/usr/bin/curl", "example.com.", "93.184.215.14", 443, "ACCEPT"),
        ("h2", "/usr/bin/firefox", "tracker.test.", "", 0, "BLOCK"),
    ]
    db = sqlite3.connect(database)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        (when,) = db.execute("SELECT min(time) FROM connections").fetchone()
        assert abs(when - time.time()) < 60
    finally:
        db.close()


def test_the_allowlist_runs_privileged_with_the_same_code(host: PluginHost) -> None:
    """A privileged plugin names keys in full, yet its short keys still mean its own options."""
    host.add(dataclasses.replace(spec("allowlist"), privileged=True))
    assert host.start_all() == {}
    assert host.decide(conn("example.com.")).verdict == ACCEPT
    store = host.services.config
    assert wait_for(lambda: store.open_subscriptions >= 1)
    store.set("plugins/allowlist/rules", config_pb2.Value(string_array=["/usr/bin/curl x.org."]))
    assert wait_for(lambda: host.decide(conn("x.org.")).verdict == ACCEPT, 3.0)
