"""The process part of confinement, on real plugin processes: a plugin cannot outlive the
host (not even `kill -9` of it), cannot gain privileges, cannot dump core, and holds a
bounded number of open files; and starting it from a short-lived thread does not kill it
(the parent-death signal belongs to the forking thread, so the host forks from one
long-lived thread)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.runtime import PluginHost, PluginSpec
from host.sandbox import MAX_OPEN_FILES
from host.services.backchannel import HostServices
from pm_plugin.wire.portmaster import network_pb2
from tests.conftest import FAKE_PLUGIN, ROOT, wait_for


def spec(name: str) -> PluginSpec:
    return PluginSpec(
        name=name, argv=(sys.executable, str(FAKE_PLUGIN), "normal"), types=("decider",)
    )


def accept_conn() -> network_pb2.Connection:
    c = network_pb2.Connection(id="c1")
    c.entity.domain = "accept.test."
    return c


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    h = PluginHost(HostServices(), base_directory=str(tmp_path), handshake_timeout=5.0)
    yield h
    h.stop_all()


def test_a_plugin_runs_without_new_privileges_core_dumps_or_unbounded_files(
    host: PluginHost,
) -> None:
    host.add(spec("limited"))
    assert host.start_all() == {}
    process = host.get("limited").process
    assert process is not None
    pid = process.server_pid  # the plugin itself, inside its sandbox
    assert pid is not None
    status = Path(f"/proc/{pid}/status").read_text()
    assert "NoNewPrivs:\t1" in status
    limits = {
        line[:26].strip(): line[26:].split()[:2]
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    }
    assert limits["Max core file size"] == ["0", "0"]
    assert limits["Max open files"] == [str(MAX_OPEN_FILES)] * 2
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1] == str(FAKE_PLUGIN).encode()
    assert host.decide(accept_conn()).verdict == network_pb2.VERDICT_ACCEPT


def test_a_plugin_started_from_a_thread_that_ends_keeps_running(host: PluginHost) -> None:
    host.add(spec("threaded"))
    starter = threading.Thread(target=host.start_all)
    starter.start()
    starter.join()
    pid = host.get("threaded").pid
    assert pid is not None
    time.sleep(0.5)  # a parent-death signal tied to the ended thread would have fired by now
    assert alive(pid)
    assert host.decide(accept_conn()).verdict == network_pb2.VERDICT_ACCEPT


HOST_SCRIPT = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
from host.runtime import PluginHost, PluginSpec
from host.services.backchannel import HostServices
host = PluginHost(HostServices(), base_directory=sys.argv[2], handshake_timeout=5.0)
argv = (sys.executable, sys.argv[3], "normal")
host.add(PluginSpec(name="orphan", argv=argv, types=("decider",)))
threading.Thread(target=host.start_all).start()
deadline = time.monotonic() + 10
while not host.get("orphan").running:
    if time.monotonic() > deadline:
        sys.exit("the plugin did not start")
    time.sleep(0.02)
print(host.get("orphan").pid, host.get("orphan").process.server_pid, flush=True)
time.sleep(120)
"""


def test_kill_9_of_the_host_ends_its_plugins(tmp_path: Path) -> None:
    # the killed host cannot remove its plugin's socket directory: keep it in a folder of
    # this test's (short: a unix socket path holds 107 bytes)
    own_tmp = tempfile.mkdtemp(prefix="pmk-")
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(ROOT), str(tmp_path), str(FAKE_PLUGIN)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"TMPDIR": own_tmp},
    )
    try:
        assert host.stdout is not None
        pids = [int(pid) for pid in host.stdout.readline().split()]  # sandbox, plugin
        assert len(pids) == 2 and all(map(alive, pids))
        os.kill(host.pid, signal.SIGKILL)
        host.wait(5)
        assert wait_for(lambda: not any(map(alive, pids)), timeout=5.0)
    finally:
        host.kill()
        host.wait(5)
        shutil.rmtree(own_tmp, ignore_errors=True)
