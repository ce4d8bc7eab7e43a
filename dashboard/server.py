"""The dashboard's HTTP server: the page, its two static files, the live stream and the
POST routes, on 127.0.0.1 only, every request checked by `dashboard.guard` first.

Why this exists, and why the standard library's `http.server`: the dashboard is a handful of
JSON routes and one Server-Sent Events stream for one person's browser on the same machine,
so it needs no framework, and a new dependency in a host that runs as its owner (often as
root) would need reasons it does not have. Every security check is explicit code in
`dashboard.guard`; this module routes. `ThreadingHTTPServer` gives each connection a thread
(the live stream holds one), at most 64 connections at once (more are closed as they come); a
client must send its whole request (line, headers, body) within 10 s, however slowly it
trickles, bodies are at most 64 KiB, and at most 8 live streams are open at once.

Nothing here logs a request line: the page's URL holds the token.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dashboard import catalog
from dashboard.actions import ROUTES, Backend
from dashboard.guard import MAX_BODY, SECURITY_HEADERS, Guard, Refusal
from dashboard.jobs import Jobs
from dashboard.live import POLL_INTERVAL, Live
from loader.home import Home

__all__ = ["DashboardServer"]

log = logging.getLogger("pm_plugins.dashboard")

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The files served, by path: a fixed table, so no request names a file of its own.
STATIC = {
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
MAX_STREAMS = 8
#: Connections served at once: each holds a thread, and anyone on this machine can connect.
MAX_CONNECTIONS = 64
KEEPALIVE = 15.0  # seconds between comments on an idle live stream


class DashboardServer:
    """The dashboard of the state root `home` on 127.0.0.1:`port` (0: a free port)."""

    def __init__(self, home: Home, port: int = 0, *, interval: float = POLL_INTERVAL) -> None:
        self.home = home
        self.httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.app = self
        self.guard = Guard(self.httpd.server_address[1])
        self.live = Live(home.control_socket, interval)
        self.backend = Backend(home, self.live, Jobs(home, self.live))
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.guard.port

    @property
    def url(self) -> str:
        """The page's address, with the token: give it to the owner only."""
        return self.guard.url

    def start(self) -> None:
        """Serve in a background thread."""
        self.live.start()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="dashboard", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.live.close()  # ends the live streams
        if self._thread is not None:  # shutdown() waits for a serve_forever() that started
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
        self.backend.jobs.close()

    def page(self) -> bytes:
        """index.html with this run's token and CSRF value (in meta tags: no inline script)."""
        text = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        text = text.replace("{{token}}", html.escape(self.guard.token))
        return text.replace("{{csrf}}", html.escape(self.guard.csrf)).encode()


class _HTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS of them: a local user who opens
    hundreds of idle connections holds that many threads, no more (the rest are closed)."""

    daemon_threads = True
    app: DashboardServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection cut at its deadline, or reset by its client: not worth a traceback."""
        log.debug("dashboard: a connection ended in an error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = 10  # seconds to send a request (and to take each chunk of the live stream)
    server_version = "pm-plugins-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_OTHER(self) -> None:
        self._serve(self.command)

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_OTHER

    def handle_one_request(self) -> None:
        """One request, which must arrive whole (line, headers, body) within `timeout`
        seconds: the socket's timeout is per read, so a client trickling a byte at a time
        would otherwise hold its connection (and thread) for ever."""
        self._late = False
        self._deadline = threading.Timer(self.timeout, self._too_late)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def _too_late(self) -> None:
        self._late = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        return super().parse_request() and not self._late

    def end_headers(self) -> None:
        """Every answer, errors of `http.server` itself included, carries the headers."""
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s: %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # http.server's own lines carry the request line, and so the token

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        app = self.server.app
        page = method == "GET" and url.path == "/"
        try:
            token = parse_qs(url.query, max_num_fields=8).get("token", [])
        except ValueError:
            self._refuse(Refusal(400, "the address has too many parameters"))
            return
        refusal = app.guard.check(method, self.headers, token, page=page)
        if refusal is not None:
            self._refuse(refusal)
        elif method not in ("GET", "POST"):  # a CORS preflight (OPTIONS) among them
            self._send_json(405, {"error": "only GET and POST are served"}, allow="GET, POST")
        elif method == "POST":
            self._post(url.path)
        elif page:
            self._send(200, app.page(), "text/html; charset=utf-8")
        elif url.path == "/api/events":
            self._events()
        elif url.path in STATIC:
            name, kind = STATIC[url.path]
            self._send(200, (STATIC_DIR / name).read_bytes(), kind)
        elif url.path == "/favicon.ico":
            self._send(204, b"", "text/plain")
        else:
            self._send_json(404, {"error": "nothing is here"})

    def _refuse(self, refusal: Refusal) -> None:
        log.info("dashboard refused %s %s: %s", self.command, urlsplit(self.path).path,
                 refusal.reason)  # fmt: skip
        self.close_connection = True
        self._drain()
        self._send_json(refusal.status, {"error": refusal.reason})

    def _drain(self) -> None:
        """Read a refused request's small body, so closing the connection does not reset it
        (a reset would reach the page as a network error instead of the refusal)."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= MAX_BODY:
            with contextlib.suppress(OSError):
                self.rfile.read(int(length))

    def _post(self, path: str) -> None:
        route = ROUTES.get(path)
        if route is None:
            self._send_json(404, {"error": "nothing is here"})
            return
        length = int(self.headers["Content-Length"])  # the guard checked it
        try:
            data = self.rfile.read(min(length, MAX_BODY))
            self._deadline.cancel()  # the request is in; the route may take its time
            if self._late:  # cut at its deadline: what came is not the whole body
                return
            body = json.loads(data)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            result = route(self.server.app.backend, body)
        except catalog.REFUSALS as err:  # the host's refusals (ControlError) among them
            self._send_json(409, {"error": str(err).strip("'\"")})
        except (ValueError, TypeError, KeyError, RecursionError) as err:
            self._send_json(400, {"error": str(err).strip("'\"")})
        except Exception as err:  # a bug of ours: one sentence for the page, the trace logged
            log.exception("dashboard: %s failed", path)
            self._send_json(500, {"error": f"the dashboard failed ({type(err).__name__})"})
        else:
            self._send_json(200, {"result": result})

    def _events(self) -> None:
        """The live stream: the whole snapshot at once, then again on every change."""
        app = self.server.app
        self._deadline.cancel()  # the stream lasts; each write still has `timeout`
        if not app.streams.acquire(blocking=False):
            self._send_json(503, {"error": f"at most {MAX_STREAMS} pages may watch at once"})
            return
        app.live.watch(+1)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.end_headers()
            seen, quiet_since = -1, time.monotonic()
            while not app.live.closed and not self._client_gone():
                version, parts = app.live.wait_newer(seen, 1.0)
                if version != seen:
                    data = json.dumps({"version": version, **parts})
                    self.wfile.write(f"event: state\ndata: {data}\n\n".encode())
                    seen, quiet_since = version, time.monotonic()
                elif time.monotonic() - quiet_since > KEEPALIVE:
                    self.wfile.write(b": keepalive\n\n")
                    quiet_since = time.monotonic()
                self.wfile.flush()
        except OSError:
            pass  # the page went away
        finally:
            app.live.watch(-1)
            app.streams.release()
            self.close_connection = True

    def _client_gone(self) -> bool:
        """Whether the page closed the live stream (a page sends nothing on it, so anything
        readable is its end), checked every second so a closed page frees its place."""
        poller = select.poll()  # not select(): the host may hold more than 1024 files
        poller.register(self.connection, select.POLLIN | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(0))

    def _send_json(self, status: int, data: Any, **headers: str) -> None:
        body = json.dumps(data).encode()
        self._send(status, body, "application/json", **headers)

    def _send(self, status: int, body: bytes, kind: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.capitalize(), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
