"""Serving a published index over HTTP on 127.0.0.1, for demos, tests and local mirrors.

Why it exists: the index is plain static files; ``pm-plugins index serve`` is the
shortest way to let a client fetch them. This is Python's ``http.server`` (threaded),
serving one folder, bound to the loopback address only. It is not a production server:
put the ``published/`` folder behind any static web server for that.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["StaticServer", "make_server"]


class _Handler(SimpleHTTPRequestHandler):
    quiet = False

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


class StaticServer(ThreadingHTTPServer):
    """A threaded static file server; ``url`` is its base URL."""

    daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start_in_thread(self) -> threading.Thread:
        """Serve in a daemon thread (stop with ``shutdown()`` then ``server_close()``)."""
        thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="index-serve",
            daemon=True,
        )
        thread.start()
        return thread


def make_server(folder: Path, port: int = 0, *, quiet: bool = False) -> StaticServer:
    """A server for ``folder`` on 127.0.0.1:``port`` (0: any free port), not yet serving."""
    handler = type("Handler", (_Handler,), {"quiet": quiet})
    return StaticServer(
        ("127.0.0.1", port), functools.partial(handler, directory=str(Path(folder)))
    )
