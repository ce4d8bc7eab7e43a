#!/usr/bin/env python3
"""A hostile plugin: from its on_init it tries every attack named in argv[1] (a JSON list of
[kind, argument] pairs), writes what each did to `attacks.json` in its data folder, then
serves as an ordinary decider (ACCEPT for accept.test.) so a test can see it still answers.

Each outcome is "ok: ..." when the attack got through and "refused: ..." when the system
stopped it; tests assert on the host's side (files, listeners, signals) too, never only on
what the plugin says.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import grpc

import pm_plugin
from pm_plugin import Verdict
from pm_plugin.wire.portmaster import plugins_pb2, plugins_pb2_grpc

ATTACKS: list[list[str]] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else []


def read(path: str) -> str:
    with open(path, "rb") as f:
        return f"ok: read {len(f.read())} bytes"


def write(path: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"devMode": true, "privileged": true}')
    return "ok: written"


def control(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b'{"op": "status"}\n')
        reply = sock.recv(65536).decode(errors="replace")
    if '"ok": false' in reply or '"ok":false' in reply:
        return f"refused: {reply.strip()}"
    return f"ok: {reply.strip()[:200]}"


def list_plugins(path: str) -> str:
    with grpc.insecure_channel(f"unix:{path}") as channel:
        answer = plugins_pb2_grpc.PluginManagerServiceStub(channel).ListPlugins(
            plugins_pb2.ListPluginsRequest(), timeout=5
        )
    return f"ok: listed {len(answer.plugins)} plugins"


def other_sockets(_: str) -> str:
    """Every plugin socket this process can see outside its own socket folder."""
    own = os.environ.get("PLUGIN_UNIX_SOCKET_DIR", "")  # the host keeps all of them beside it
    pattern = os.path.join(os.path.dirname(own), "**", "*.sock")
    found = [p for p in glob.glob(pattern, recursive=True) if not p.startswith(own + "/")]
    if not found:
        return "refused: no other plugin's socket is visible"
    for path in found:
        try:
            return f"ok: {path}: " + list_plugins(path)
        except grpc.RpcError:
            continue
    return f"refused: {len(found)} sockets seen, none answered"


def tcp(port: str) -> str:
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as sock:
        sock.sendall(b"hello from the plugin\n")
    return "ok: connected"


def abstract(name: str) -> str:
    """Connect to an abstract unix socket (no file: it lives in the network namespace)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect("\0" + name)
    return "ok: connected"


def spawn(marker: str) -> str:
    """A grandchild in a session of its own, which outlives its parent."""
    code = "import os, time; os.setsid(); time.sleep(300)"
    child = subprocess.Popen([sys.executable, "-c", code, marker], start_new_session=True)
    return f"ok: started pid {child.pid}"


def kill(pid: str) -> str:
    os.kill(int(pid), signal.SIGUSR1)
    return "ok: signalled"


def memfd(size: str) -> str:
    """Memory no rlimit counts: a memfd's pages (charged to the plugin's cgroup)."""
    fd = os.memfd_create("hoard")
    chunk = b"x" * (1 << 20)
    for _ in range(int(size) >> 20):
        os.write(fd, chunk)
    return f"ok: a memfd holds {os.fstat(fd).st_size} bytes"


def memory(size: str) -> str:
    block = bytearray(int(size))
    return f"ok: holds {len(block)} bytes"


KINDS: dict[str, Callable[[str], str]] = {
    "read": read,
    "write": write,
    "control": control,
    "grpc": list_plugins,
    "other-sockets": other_sockets,
    "tcp": tcp,
    "abstract": abstract,
    "spawn": spawn,
    "kill": kill,
    "memory": memory,
    "memfd": memfd,
}


def attack() -> None:
    outcomes: dict[str, str] = {}
    for kind, arg in ATTACKS:
        try:
            outcomes[f"{kind} {arg}"] = KINDS[kind](arg)
        except (OSError, MemoryError, grpc.RpcError) as err:
            outcomes[f"{kind} {arg}"] = f"refused: {type(err).__name__}: {err}"
    path = os.path.join(pm_plugin.default.base_directory, "attacks.json")
    with open(path + ".tmp", "w", encoding="utf-8") as out:
        json.dump(outcomes, out)
    os.replace(path + ".tmp", path)


def main() -> None:
    pm_plugin.on_init(attack)
    pm_plugin.register_decider(
        lambda conn: Verdict.ACCEPT if conn.entity.domain == "accept.test." else Verdict.UNDECIDED
    )
    pm_plugin.serve()


if __name__ == "__main__":
    main()
