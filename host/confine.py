"""Where every plugin process is forked: one long-lived thread, so the parent-death signal
means what it says.

Why this exists: the sandbox (host.sandbox) starts a plugin through small programs that set
its limits and namespaces and exec it in place (Python's `preexec_fn` may deadlock in a
threaded host), among them `setpriv --pdeathsig KILL`, which makes the kernel kill the plugin
when its parent dies. The parent-death signal belongs to the *thread* that
forked, not the process: plugins are started by short-lived module-manager threads, so every
start goes through one long-lived `Spawner` thread, and the signal fires only when the host
itself ends.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["spawn"]


class _Spawner:
    """One long-lived thread that forks every plugin (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="plugin-spawner", daemon=True
                )
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((start, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            start, done = self._jobs.get()
            try:
                done.set_result(start())
            except BaseException as err:  # handed to the caller, who raises it
                done.set_exception(err)


_SPAWNER = _Spawner()


def spawn(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run `start` (a `subprocess.Popen(...)` call) on the long-lived spawner thread."""
    return _SPAWNER.run(start)
