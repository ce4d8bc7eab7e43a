"""`make demo`: the runtime end to end on the example plugins, printing each step.

Starts `hosts` (resolver) over a demo hosts file, `allowlist` (decider) and `history`
(reporter) as real plugin processes, resolves a name through the plugin, decides two
connections, reports them, shows each plugin's state, and stops everything.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from loader.runtime import PluginHost, PluginSpec
from pm_plugin.wire.portmaster import network_pb2, resolver_pb2

EXAMPLES = Path(__file__).resolve().parent / "plugins"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def connection(binary: str, domain: str, cid: str) -> network_pb2.Connection:
    conn = network_pb2.Connection(id=cid)
    conn.process.binary_path = binary
    conn.entity.domain = domain
    return conn


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="    log: %(message)s")
    # plugin executables find `python3` on PATH: make it this interpreter
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    with tempfile.TemporaryDirectory(prefix="pm-plugins-demo-") as home:
        hosts_file = Path(home) / "hosts"
        hosts_file.write_text("192.0.2.7 printer.lan printer\n2001:db8::7 printer.lan\n")
        host = PluginHost(base_directory=home)
        plugins = [
            ("hosts", ("resolver",), {"path": str(hosts_file)}),
            ("allowlist", ("decider",), None),
            ("history", ("reporter",), {"database": str(Path(home) / "history.sqlite")}),
        ]
        for name, types, static in plugins:
            host.add(
                PluginSpec(
                    name=name,
                    argv=(str(EXAMPLES / name / "plugin"),),
                    types=types,
                    static_config=json.dumps(static).encode() if static else b"",
                )
            )
        try:
            step("start the example plugins (go-plugin handshake, broker, Configure)")
            failed = host.start_all()
            for instance in host.plugins():
                print(f"    {instance.name:<10} {instance.state.value:<8} pid {instance.pid}")
            if failed:
                print(f"    failed: {failed}")
                return 1

            step("resolve printer.lan. through the hosts plugin")
            result = host.resolve(resolver_pb2.DNSQuestion(name="printer.lan.", type=1))
            if result is None:
                print("    not handled")
                return 1
            for rr in result.response.rrs:
                print(f"    {rr.name} A {'.'.join(str(b) for b in rr.data)} (from {result.plugin})")

            step("decide two connections through the allowlist decider")
            for cid, binary, domain in [
                ("c1", "/usr/bin/curl", "example.com."),
                ("c2", "/usr/bin/firefox", "example.com."),
            ]:
                conn = connection(binary, domain, cid)
                verdict = host.decide(conn)
                name = network_pb2.Verdict.Name(verdict.verdict)  # type: ignore[arg-type]
                print(f"    {binary} -> {domain}: {name} {verdict.reason!r} by {verdict.plugin}")
                conn.verdict = verdict.verdict  # type: ignore[assignment]
                host.report(conn)

            step("the history reporter recorded them in SQLite")
            database, found = Path(home) / "history.sqlite", []
            for _ in range(50):
                if database.exists():
                    with sqlite3.connect(database) as db:
                        rows = db.execute("SELECT id, binary, domain, verdict FROM connections")
                        found = rows.fetchall()
                    if len(found) == 2:
                        break
                time.sleep(0.1)
            for row in found:
                print(f"    {row}")
        finally:
            step("stop every plugin (Shutdown, controller Shutdown, SIGTERM, SIGKILL)")
            host.stop_all()
            for instance in host.plugins():
                print(f"    {instance.name:<10} {instance.state.value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
