"""The plugin process under test: started as a host starts it, its handshake read, its
stderr kept as log records.

Why this exists: a plugin is only tested for real as its own process, reached through
go-plugin's handshake; a plugin author should not need the host to do that. This starts the
executable with the environment every go-plugin host sets (magic cookie, protocol versions,
socket folder), reads the handshake line, and collects what the plugin logs (hclog JSON on
stderr, as `pm_plugin.serve()` writes it) so a test can read it and a crash can carry it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

COOKIE = ("PORTMASTER_PLUGIN", "hello")
#: Log records kept (the oldest are dropped), so a chatty plugin cannot exhaust the test.
MAX_RECORDS = 10_000


class PluginStartError(RuntimeError):
    """The plugin did not start: no handshake, or one this harness cannot use."""


@dataclass(frozen=True)
class LogRecord:
    """One line the plugin logged: its level (debug, info, warn, error), the message (a
    traceback included) and the logger's name."""

    level: str
    message: str
    module: str = ""


def _record(line: str) -> LogRecord:
    try:
        doc = json.loads(line)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return LogRecord("info", line, "stderr")
    return LogRecord(
        str(doc.get("@level", "info")), str(doc.get("@message", "")), str(doc.get("@module", ""))
    )


class PluginProcess:
    """One started plugin executable; `start()` returns the socket it announced."""

    def __init__(self, argv: Sequence[str], socket_parent: str, env: dict[str, str]) -> None:
        self.argv = list(argv)
        self._socket_parent = socket_parent
        self._env = env
        self.records: list[LogRecord] = []
        self.changed = threading.Condition()
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = threading.Thread()

    def start(self, timeout: float) -> str:
        env = {
            **self._env,
            COOKIE[0]: COOKIE[1],
            "PLUGIN_PROTOCOL_VERSIONS": "1",
            "PLUGIN_UNIX_SOCKET_DIR": self._socket_parent,
        }
        self.proc = subprocess.Popen(
            self.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self._stderr = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr.start()
        line = self._handshake_line(timeout)
        parts = line.strip().split("|")
        if len(parts) < 5 or parts[0] != "1" or parts[2] != "unix" or parts[4] != "grpc":
            self.stop()
            raise PluginStartError(
                f"the plugin printed a handshake this harness cannot use: {line!r}"
            )
        if parts[1] != "1":
            self.stop()
            raise PluginStartError(f"the plugin speaks protocol version {parts[1]}, not 1")
        return parts[3]

    def _handshake_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        line = _read_line(self.proc.stdout.fileno(), time.monotonic() + timeout)
        if line.endswith(b"\n"):  # what it prints later is drained, so it never blocks
            threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()
        else:
            code = self.exit_code(wait=0.5)
            self.stop()
            self._stderr.join(2.0)  # what it said before it ended, all of it
            said = "\n".join(r.message for r in self.records[-20:])
            why = (
                f"exited with code {code}"
                if code is not None
                else f"printed no handshake in {timeout:g} s"
            )
            raise PluginStartError(f"the plugin {why}" + (f"; it said:\n{said}" if said else ""))
        return line.decode(errors="replace")

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.proc.stderr as stderr:  # closed once the plugin has ended
            for raw in stderr:
                record = _record(raw.decode(errors="replace").rstrip("\n"))
                with self.changed:
                    self.records.append(record)
                    del self.records[:-MAX_RECORDS]
                    self.changed.notify_all()

    def exit_code(self, wait: float = 0.0) -> int | None:
        if self.proc is None:
            return None
        deadline = time.monotonic() + wait
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.proc.poll()

    def stop(self, grace: float = 2.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _read_line(fd: int, deadline: float) -> bytes:
    """One line from `fd`, or what came before the deadline or the end (no newline then):
    a plugin that prints half a handshake and hangs cannot hold the test past its timeout."""
    got = b""
    while not got.endswith(b"\n") and len(got) < 4096:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        got += chunk
    return got


def _drain(stream: IO[bytes]) -> None:
    """Read and drop what the plugin writes to stdout after its handshake, until it ends."""
    with contextlib.suppress(OSError, ValueError), stream:
        while stream.read(65536):
            pass
