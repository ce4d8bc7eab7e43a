#!/usr/bin/env python3
"""One real plugin executable that misbehaves on purpose, selected by argv[1].

Modes: normal, no-handshake, garbage-first, wrong-version, crash-on-configure,
slow-shutdown, slow-configure, fork-child, no-extensions, flood-stderr, forge-log, services,
refuse-restart MARKER, hang-restart MARKER, gate-25, accept-cached.
The two restart modes append a line to the file MARKER on every start (the host passes the
same argv each time; static config comes only after the handshake, too late to decide): the
first start runs as normal, every later one refuses the handshake (exit 1 with a stderr line)
or hangs without a handshake.
In every mode but the handshake ones it is a decider, reporter, resolver and hook plugin
whose answers are chosen by the connection's domain (see `decide`), except for the decider of
the two decision-cache modes: gate-25 blocks port 25 (remote or local) without a cache TTL and
is UNDECIDED otherwise (with the TTL in static config "undecided_ttl", if any); accept-cached
accepts everything with a one-hour TTL, its reason counting its calls ("accept #n"), registers
the option "rules", and on the domain "forget.test." asks the host to forget its verdicts.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pm_plugin
from pm_plugin import Decision, NullPlugin, Verdict

MODE = sys.argv[1] if len(sys.argv) > 1 else "normal"
log = logging.getLogger("fake")


def decide(conn: pm_plugin.Connection) -> object:
    domain = conn.entity.domain
    if domain == "accept.test.":
        return Verdict.ACCEPT, "accepted by fake"
    if domain == "block.test.":
        return Verdict.BLOCK, "blocked by fake"
    if domain == "cache.test.":
        return Decision(Verdict.BLOCK, "cached block", cache_ttl=60)
    if domain == "slow.test.":
        time.sleep(5)
        return Verdict.ACCEPT
    if domain == "crash.test.":
        os._exit(3)
    if domain == "error.test.":
        raise RuntimeError("fake decider failure")
    if domain == "forge.test.":  # an error whose details try to forge a host log line
        raise RuntimeError(f"oops\n{FORGED}\x1b[2J")
    if domain == "big.test.":
        return Verdict.ACCEPT, "x" * (5 * 1024 * 1024)
    log.info("undecided for %s", domain)
    return Verdict.UNDECIDED


def gate_25(conn: pm_plugin.Connection) -> object:
    if 25 in (conn.entity.port, conn.local_port):
        return Decision(Verdict.BLOCK, "port 25 is closed")
    ttl = (_static() or {}).get("undecided_ttl", 0)
    return Decision(Verdict.UNDECIDED, cache_ttl=ttl if isinstance(ttl, int | float) else 0)


_calls = itertools.count(1)


def accept_cached(conn: pm_plugin.Connection) -> object:
    n = next(_calls)
    if conn.entity.domain == "forget.test.":
        pm_plugin.forget_cached_verdicts()
        return Verdict.UNDECIDED
    return Decision(Verdict.ACCEPT, f"accept #{n}", cache_ttl=3600)


def report(conn: pm_plugin.Connection) -> None:
    if conn.entity.domain == "slow.test.":
        time.sleep(0.5)
    path = pm_plugin.default.static_config.get("report_path") if _static() else None
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"id": conn.id, "verdict": conn.verdict}) + "\n")


def resolve(
    question: pm_plugin.DNSQuestion, conn: pm_plugin.Connection
) -> pm_plugin.DNSResponse | None:
    if question.name == "fake.test.":
        return pm_plugin.answer(pm_plugin.record_a("fake.test.", "192.0.2.1"))
    if question.name == "empty.test.":
        return pm_plugin.answer()
    if question.name == "malformed.test.":
        bad = pm_plugin.record_a("malformed.test.", "192.0.2.1")
        bad.data = b"\x01\x02\x03"  # an A record must carry 4 bytes
        return pm_plugin.answer(bad)
    return None


class Hooks(NullPlugin):
    def pre_auth_check(self, entity: pm_plugin.Entity, data: pm_plugin.Entity) -> pm_plugin.Entity:
        if entity.id == "refuse":
            raise pm_plugin.HookError("fake refuses this entity")
        entity.meta.untyped_meta.append("fake:seen")
        return entity


def exercise_host_services() -> None:
    """Use every host service from on_init (inside Configure), then record what happened."""
    plugin = pm_plugin.default
    cfg = plugin.config()
    cfg.register_option("greeting", "hi")
    # as in the PR, a privileged plugin names even its own options by their full key
    own = f"plugins/{plugin.name}/greeting" if plugin.privileged else "greeting"
    seen: dict[str, object] = {"greeting": cfg.get_string(own)}
    for key in ("plugins/other/secret", "core/dns"):
        try:
            seen[key] = cfg.get_string(key)
        except Exception as err:
            seen[key] = f"refused: {err}"
    manager = plugin.plugin_manager()
    seen["plugins"] = [p.config.name for p in manager.list_plugins()] if manager else None

    def ask() -> None:
        seen["answer"] = plugin.notify("Fake asks", "Pick one", actions=[("yes", "Yes")])
        path = os.path.join(plugin.base_directory, f"services-{plugin.name}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump(seen, out)
        os.replace(path + ".tmp", path)

    threading.Thread(target=ask, daemon=True).start()


FORGED = "INFO pm_plugins.host: plugin allowlist verified"


def forge_log_lines() -> None:
    """Try to put lines of our own into the host's log, on every channel a plugin writes."""
    raw = sys.__stderr__
    assert raw is not None
    hclog = {"@level": "error", "@message": f"real\n{FORGED}\x1b[2J", "@timestamp": "now"}
    raw.write(json.dumps(hclog) + "\n")  # an hclog line whose message holds a newline
    raw.write(f"plain\r{FORGED}\x1b]0;title\x07\n")  # a carriage return and escapes
    raw.flush()
    print(f"stdio\n{FORGED}\x1b[31m", flush=True)  # over go-plugin's stdio stream
    log.warning("logged\n%s", FORGED)  # through logging (hclog JSON on stderr)


def _static() -> dict[str, object] | None:
    value = pm_plugin.default.static_config
    return value if isinstance(value, dict) else None


def restart_mode() -> None:
    """For refuse-restart and hang-restart: let the first start through, fail every later one."""
    marker = sys.argv[2]
    first = not os.path.exists(marker)
    with open(marker, "a", encoding="utf-8") as out:
        out.write(f"start {os.getpid()} {time.monotonic()}\n")
    if first:
        return
    if MODE == "hang-restart":
        time.sleep(60)
    sys.stderr.write("fake refuses to start again\n")
    sys.stderr.flush()
    sys.exit(1)


def main() -> None:
    if MODE in ("refuse-restart", "hang-restart"):
        restart_mode()
    if MODE == "no-handshake":
        time.sleep(60)
        return
    if MODE == "wrong-version":
        print("1|7|unix|/tmp/nowhere.sock|grpc|", flush=True)
        time.sleep(60)
        return
    if MODE == "garbage-first":
        print("starting up, hello!", flush=True)
    if MODE == "crash-on-configure":

        @pm_plugin.on_init
        def fail() -> None:
            raise RuntimeError("fake init failure")

    if MODE == "slow-shutdown":
        pm_plugin.on_shutdown(lambda: time.sleep(30))
    if MODE == "slow-configure":
        pm_plugin.on_init(lambda: time.sleep(3))
    if MODE == "fork-child":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    if MODE == "services":
        pm_plugin.on_init(exercise_host_services)
    if MODE == "no-extensions":
        pm_plugin.default.offer_extensions = False
    if MODE == "flood-stderr":
        sys.__stderr__.write("x" * 200_000 + "\n")  # type: ignore[union-attr]
    if MODE == "forge-log":
        pm_plugin.on_init(forge_log_lines)

    if MODE == "accept-cached":
        pm_plugin.on_init(lambda: pm_plugin.config().register_option("rules", "none"))
    deciders = {"gate-25": gate_25, "accept-cached": accept_cached}
    pm_plugin.register_decider(deciders.get(MODE, decide))
    pm_plugin.register_reporter(report)
    pm_plugin.register_resolver(resolve)
    pm_plugin.register_hooks(Hooks())
    if MODE == "slow-shutdown":  # ignore SIGTERM for good: serve() must not undo it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal = lambda *args: None  # type: ignore[assignment]
    pm_plugin.serve()


if __name__ == "__main__":
    main()
