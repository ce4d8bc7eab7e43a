"""Installs, upgrades and removals the page started: one background thread each, one at a
time, their progress lines in the live snapshot.

Why this exists: an install downloads and verifies, which takes longer than a request should
wait, and the page shows its progress as it happens. Each job runs `dashboard.catalog` in a
thread of its own; jobs run one after another (the state root's lock would serialize them
anyway); a refusal ends the job with the library's sentence. The newest jobs are kept for
the page, the older ones forgotten.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from dashboard import catalog
from dashboard.live import Live
from loader.home import Home

__all__ = ["KINDS", "Jobs"]

log = logging.getLogger("pm_plugins.dashboard")

KINDS = {
    "install": catalog.install,
    "upgrade": catalog.upgrade,
    "uninstall": catalog.uninstall_plugin,
}
KEEP = 20  # jobs shown
MAX_WAITING = 8  # jobs waiting or running at once (each holds a thread)
MAX_LINES = 200  # progress lines kept per job
MAX_LINE = 2048  # characters kept per line


@dataclass
class Job:
    id: int
    kind: str
    name: str
    state: str = "waiting"  # waiting, running, done, refused
    lines: list[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "state": self.state,
                "lines": list(self.lines), "error": self.error}  # fmt: skip


class Jobs:
    """The jobs of one dashboard, published to `live` as its part "jobs"."""

    def __init__(self, home: Home, live: Live) -> None:
        self._home = home
        self._live = live
        self._lock = threading.Lock()  # guards the list and the jobs in it
        self._one_at_a_time = threading.Lock()
        self._jobs: list[Job] = []
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(1)
        live.set("jobs", [])

    def start(self, kind: str, name: str) -> int:
        """Start `kind` (install, upgrade, uninstall) of plugin `name`; returns the job's id."""
        if kind not in KINDS:
            raise ValueError(f"unknown job {kind!r}: one of {', '.join(KINDS)}")
        with self._lock:
            waiting = sum(j.state not in ("done", "refused") for j in self._jobs)
            if waiting >= MAX_WAITING:
                raise ValueError(
                    f"{waiting} jobs are waiting or running already; start this one when they end"
                )
            job = Job(next(self._ids), kind, name)
            self._jobs.append(job)
            done = [j for j in self._jobs if j.state in ("done", "refused")]
            for old in done[: max(0, len(self._jobs) - KEEP)]:
                self._jobs.remove(old)
            thread = threading.Thread(target=self._run, args=(job,), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        self._publish()
        thread.start()
        return job.id

    def close(self, timeout: float = 30.0) -> None:
        """Let a job under way finish (an install is atomic either way)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def _run(self, job: Job) -> None:
        with self._one_at_a_time:
            self._update(job, state="running")
            try:
                KINDS[job.kind](self._home, job.name, lambda line: self._say(job, line),
                                self._live.running_versions)  # fmt: skip
            except catalog.REFUSALS as err:
                self._update(job, state="refused", error=_sentence(err))
            except Exception as err:  # a bug of ours: say so on the page, keep serving
                log.exception("dashboard job %s %s failed", job.kind, job.name)
                self._update(job, state="refused", error=f"{type(err).__name__}: {err}")
            else:
                self._update(job, state="done")
        self._live.poke()

    def _say(self, job: Job, line: str) -> None:
        with self._lock:
            if len(job.lines) < MAX_LINES:
                job.lines.append(line[:MAX_LINE])
        self._publish()

    def _update(self, job: Job, *, state: str, error: str = "") -> None:
        with self._lock:
            job.state, job.error = state, error[:MAX_LINE]
        self._publish()

    def _publish(self) -> None:
        with self._lock:
            jobs = [j.to_json() for j in self._jobs]
        self._live.set("jobs", jobs)


def _sentence(err: Exception) -> str:
    """The refusal in one sentence; for the system's errors, which file and what it said."""
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror or err}"
    return str(err).strip("'\"")
