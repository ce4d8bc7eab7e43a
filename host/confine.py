"""How a plugin process is started so that it cannot outlive the host, gain privileges or
dump core: the process part of the confinement, through util-linux's own tools.

Why this exists: a plugin is a separate process, and a hostile one may try to stay behind
when the host is killed (`kill -9` leaves no time to stop anything), to gain privileges
through a set-user-ID program, or to leave its memory in a core file. The kernel has a
mechanism for each, set between fork and exec of the plugin:

- `prlimit` (util-linux) sets the rlimits: no core dumps, a bounded number of open files;
- `setpriv --no-new-privs` sets the no-new-privileges bit (execve can no longer raise
  privileges, and seccomp/Landlock become available to an unprivileged process), and
  `--pdeathsig KILL` makes the kernel kill the plugin when its parent dies.

Python's `subprocess` cannot run code between fork and exec safely in a threaded host
(`preexec_fn` may deadlock), so the plugin is started through these two small programs,
which exec it in place (same pid). The parent-death signal belongs to the *thread* that
forked, not the process: plugins are started by short-lived module-manager threads, so every
start goes through one long-lived `Spawner` thread, and the signal fires only when the host
itself ends.
"""

from __future__ import annotations

import functools
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from host.errors import PluginProcessError

__all__ = ["MAX_OPEN_FILES", "Confinement", "confinement", "spawn"]

#: Open files a plugin may hold (its gRPC server, sockets, its own files).
MAX_OPEN_FILES = 1024


@dataclass(frozen=True)
class Confinement:
    """The process limits a plugin starts under: the argv prefix that sets them."""

    prefix: tuple[str, ...]

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return [*self.prefix, *argv]


@functools.cache
def confinement() -> Confinement:
    """The wrappers of this machine, looked up once; refuses (one sentence, and again on the
    next start) when util-linux's are missing."""
    prlimit, setpriv = shutil.which("prlimit"), shutil.which("setpriv")
    if prlimit is None or setpriv is None:
        missing = " and ".join(n for n, p in (("prlimit", prlimit), ("setpriv", setpriv)) if not p)
        raise PluginProcessError(
            f"plugins cannot be started confined: {missing} (util-linux) is not on PATH"
        )
    prefix = (
        prlimit,
        "--core=0:0",
        f"--nofile={MAX_OPEN_FILES}:{MAX_OPEN_FILES}",
        "--",
        setpriv,
        "--no-new-privs",
        "--pdeathsig",
        "KILL",
        "--",
    )
    return Confinement(prefix)


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
