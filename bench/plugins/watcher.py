#!/usr/bin/env python3
"""The face benchmark's watcher plugin (bench/face.py): reports every change of its option.

It registers the int option `level` (the host stores it as `plugins/<name>/level`) when the
host configures it, watches it, and writes each new value as one line to the FIFO
`watch.fifo` in its data folder, which it creates there (mode 0600) if missing. The benchmark
holds the FIFO open for reading and times `config set` until the line arrives. While no
reader holds the FIFO, a change is dropped rather than waited on. It decides nothing: its
decider answers UNDECIDED, so the host's decider chain moves on.
"""

from __future__ import annotations

import errno
import os
import sys
import threading

import pm_plugin
from pm_plugin import Decision, Verdict

OPTION = "level"
FIFO = "watch.fifo"
UNDECIDED = Decision(Verdict.UNDECIDED)


class Watcher:
    def __init__(self) -> None:
        self.path = ""
        self.fd: int | None = None
        self.lock = threading.Lock()

    def configure(self) -> None:
        """on_init: make the FIFO, register the option and watch it."""
        self.path = os.path.join(pm_plugin.default.base_directory, FIFO)
        if not os.path.exists(self.path):
            os.mkfifo(self.path, 0o600)
        config = pm_plugin.config()
        config.register_option(OPTION, 0, name="Level", description="face benchmark option")
        config.on_change([OPTION], self.changed)

    def changed(self, key: str, value: pm_plugin.host.Value) -> None:
        line = f"{value.int}\n".encode()
        with self.lock:
            try:
                if self.fd is None:
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                os.write(self.fd, line)
            except OSError as err:
                if err.errno not in (errno.ENXIO, errno.EPIPE, errno.EAGAIN):
                    print(f"watcher: cannot write {self.path}: {err}", file=sys.stderr)
                if self.fd is not None and err.errno != errno.EAGAIN:
                    os.close(self.fd)  # the reader went away: open again next time
                    self.fd = None


def decide(conn: pm_plugin.Connection) -> Decision:
    return UNDECIDED


def main() -> None:
    watcher = Watcher()
    pm_plugin.on_init(watcher.configure)
    pm_plugin.register_decider(decide)
    pm_plugin.serve()


if __name__ == "__main__":
    main()
