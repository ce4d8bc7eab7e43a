"""What the user reads is true and one sentence (the host's face, issue 17 item 5): a refused
handshake, a plugin that dies in Configure or right after its handshake, and queried
connections that never share an id. Real plugin processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from host.errors import HandshakeError
from host.process import PluginProcess, describe_exit
from host.reference_host import ReferenceHost
from host.runtime import PluginSpec
from loader.home import Home
from pm_plugin.wire.portmaster import network_pb2
from tests.conftest import FAKE_PLUGIN


def test_a_refused_handshake_reads_as_one_sentence() -> None:
    proc = PluginProcess(
        "fake", [sys.executable, str(FAKE_PLUGIN), "wrong-version"], handshake_timeout=5
    )
    with pytest.raises(HandshakeError) as err:
        proc.start()
    said = str(err.value)
    assert said.startswith(
        "plugin fake failed to start: it printed a handshake this host refuses (the plugin "
        "announced app protocol version 7, but the host offered only 1"
    )
    assert "it the plugin" not in said and "\n" not in said


@pytest.mark.parametrize(
    ("code", "sandboxed", "words"),
    [
        (137, True, "killed by signal SIGKILL"),  # bubblewrap reports 128 + the signal
        (137, False, "exited with code 137"),
        (-9, False, "killed by signal SIGKILL"),
        (3, True, "exited with code 3"),
    ],
)
def test_an_exit_is_described_as_it_happened(code: int, sandboxed: bool, words: str) -> None:
    assert describe_exit(code, sandboxed) == words


def test_every_queried_connection_has_an_id_of_its_own(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    host = ReferenceHost(home, dev_mode=False)
    seen: list[str] = []
    decide = host.plugins.decide

    def recording(connection: network_pb2.Connection) -> object:
        seen.append(connection.id)
        return decide(connection)

    host.plugins.decide = recording  # type: ignore[method-assign,assignment]
    host.boot()
    try:
        for _ in range(3):
            host.decide(binary="/usr/bin/curl", domain="example.com")
    finally:
        host.shutdown()
    assert len(seen) == 3 and len(set(seen)) == 3


CRASHING = """\
#!{python}
import pm_plugin

def decide(conn):
    raise RuntimeError("the rules file is gone")

pm_plugin.register_decider(decide)
pm_plugin.serve()
"""


def test_a_decider_that_crashes_is_named_with_its_error_not_hidden(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    script = tmp_path / "crashing.py"
    script.write_text(CRASHING.format(python=sys.executable))
    script.chmod(0o755)
    host = ReferenceHost(home, dev_mode=False)
    host.boot()
    try:
        host.plugins.add(PluginSpec(name="crashy", argv=(str(script),), types=("decider",)))
        host.plugins.start("crashy")
        said = host.decide(binary="/usr/bin/curl", domain="example.com")
    finally:
        host.shutdown()
    assert said["reason"] == "no decider decided: default"
    ((failed),) = said["failed"]
    assert failed["plugin"] == "crashy"
    assert "the rules file is gone" in failed["error"], failed
