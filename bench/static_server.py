"""A counting static file server for bench/registry_load.py, run as its own process.

Why it exists: the load benchmark needs the server's CPU apart from the clients' (so the
server is a separate process whose /proc/<pid>/stat the benchmark reads) and exact
request and byte counts on the server side (what a CDN would bill), without a log line
per request. It is Python's ``ThreadingHTTPServer`` with ``SimpleHTTPRequestHandler``,
like ``index serve``, plus:

- HTTP/1.1 keep-alive (as a CDN edge speaks it) and a listen backlog of 128 (the default
  5 would drop SYNs under 50 concurrent clients and measure the kernel's 1 s retransmit);
- counters: requests, responses by status, connections accepted and bytes written to
  the socket (status line, headers and body);
- ``GET /.stats``: the counters as JSON; that request and its connection are not counted.

Usage: ``python bench/static_server.py FOLDER`` binds 127.0.0.1 on a free port, prints
``PORT <n>`` on one line and serves until SIGTERM/SIGINT; :class:`ServerProcess` starts it
so from a parent and reads its CPU and counters. Standard library only.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

STATS_PATH = "/.stats"


class Stats:
    """Counters shared by every handler thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.bytes_sent = 0
        self.statuses: Counter[int] = Counter()

    def add(self, *, requests: int = 0, connections: int = 0, sent: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.connections += connections
            self.bytes_sent += sent

    def status(self, code: int) -> None:
        with self.lock:
            self.statuses[code] += 1

    def as_json(self) -> bytes:
        with self.lock:
            data = {
                "requests": self.requests,
                "connections": self.connections,
                "bytes_sent": self.bytes_sent,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            }
        return json.dumps(data).encode()


class _CountingWriter(io.BufferedIOBase):
    """The socket writer of one connection, counting what is written while `counting`."""

    def __init__(self, inner: Any, stats: Stats) -> None:
        super().__init__()
        self.inner = inner
        self.stats = stats
        self.counting = True

    def write(self, data: Any) -> int:
        written: int = self.inner.write(data)
        if self.counting:
            self.stats.add(sent=written)
        return written

    def flush(self) -> None:
        if not self.inner.closed:
            self.inner.flush()

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            super().close()


class CountingHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stats: Stats  # set on the class made by `make_server`

    def setup(self) -> None:
        super().setup()
        self.counter = _CountingWriter(self.wfile, self.stats)
        self.wfile = self.counter  # type: ignore[assignment]
        self.stats.add(connections=1)

    def do_GET(self) -> None:
        if self.path == STATS_PATH:
            self.counter.counting = False
            self.stats.add(connections=-1)  # this connection is the stats reader's
            body = self.stats.as_json()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        super().do_GET()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.counter.counting:
            self.stats.add(requests=1)
            self.stats.status(code if isinstance(code, int) else 0)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # nothing per request


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def make_server(folder: str) -> CountingServer:
    handler = type("Handler", (CountingHandler,), {"stats": Stats()})
    return CountingServer(("127.0.0.1", 0), partial(handler, directory=folder))


class ServerProcess:
    """This script serving `folder` in a child process (for the parent: its URL, CPU and
    counters); stopped by `close`."""

    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(folder)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().split()
            if len(line) != 2 or line[0] != "PORT":
                raise RuntimeError(f"static_server.py said {' '.join(line)!r}, not PORT <n>")
            self.url = f"http://127.0.0.1:{int(line[1])}/"
        except BaseException:
            self.close()
            raise

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + ".stats", timeout=10) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: static_server.py FOLDER", file=sys.stderr)
        return 2
    server = make_server(argv[0])

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
