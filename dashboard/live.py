"""What the page shows, kept current: the booted host polled, and a version that changes only
when something did.

Why this exists: the page updates without reloading (Server-Sent Events), and many open
streams must not each ask the host. One thread asks the host's control socket every 200 ms
(`status`, `notifications`, `config`) while a page listens, keeps the answers as named parts
of one snapshot, and wakes the streams only when a part changed. The install jobs
(`dashboard.jobs`) put their progress in the same snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host.control import ControlError, request, running_versions

__all__ = ["POLL_INTERVAL", "Live"]

POLL_INTERVAL = 0.2
#: A control request the poller makes: (op) -> its result; raises ControlError.
Ask = Callable[[str], Any]


class Live:
    """The snapshot, its version, and the poller of the host at `control`."""

    def __init__(self, control: Path, interval: float = POLL_INTERVAL) -> None:
        self._control = control
        self._interval = interval
        self._cond = threading.Condition()
        self._parts: dict[str, Any] = {"host": None, "notifications": None, "config": None}
        self._version = 0
        self._watchers = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="dashboard-poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._closed

    def set(self, name: str, value: Any) -> None:
        """Replace one part; the version moves (and the streams wake) only if it changed."""
        with self._cond:
            if self._parts.get(name) == value:
                return
            self._parts[name] = value
            self._version += 1
            self._cond.notify_all()

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        with self._cond:
            return self._version, dict(self._parts)

    def wait_newer(self, seen: int, timeout: float) -> tuple[int, dict[str, Any]]:
        """The snapshot once its version is not `seen` (or `timeout` passed, or closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen or self._closed, timeout)
            return self._version, dict(self._parts)

    def watch(self, delta: int) -> None:
        """A stream opened (+1) or closed (-1); the host is polled while one is open."""
        with self._cond:
            self._watchers += delta
        self.poke()

    def poke(self) -> None:
        """Poll now (after a change the page asked for), not at the next tick."""
        self._wake.set()

    def running_versions(self) -> dict[str, str] | None:
        """The plugin versions the booted host runs (None: no host answers)."""
        return running_versions(self._control)

    def _run(self) -> None:
        while not self._closed:
            with self._cond:
                watched = self._watchers > 0
            if watched or self._wake.is_set():
                self._wake.clear()
                self.poll()
            self._wake.wait(self._interval)

    def poll(self) -> None:
        """Ask the host once and update the parts."""

        def ask(op: str) -> Any:
            return request(self._control, op, timeout=5)

        try:
            self.set("host", {"status": ask("status"), "error": None})
        except ControlError as err:
            self.set("host", {"status": None, "error": str(err)})
            self.set("notifications", None)
            self.set("config", None)
            return
        self.set("notifications", _part(ask, "notifications"))
        self.set("config", _part(ask, "config"))


def _part(ask: Ask, op: str) -> dict[str, Any]:
    """One answer of the host, or the sentence it refused with."""
    try:
        result = ask(op)
    except ControlError as err:
        return {"error": str(err)}
    return result if isinstance(result, dict) else {"error": f"the host's {op} is not an object"}
