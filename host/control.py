"""The booted host's control socket: `status`, `query` and module switches from another shell.

Why this exists: `pm-plugins boot` keeps running; the user asks it questions from another
terminal. The channel is a unix socket in a 0700 directory, the socket itself 0600, and
every connection's peer uid (SO_PEERCRED) must be the host's own: only its owner can ask.

One request per connection: a JSON object on one line (`{"op": "status"}`), answered by
one JSON line, `{"ok": true, "result": ...}` or `{"ok": false, "error": "one sentence"}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host.peers import in_host_pid_namespace, peer_credentials
from loader.errors import LoaderError

log = logging.getLogger("pm_plugins.control")

MAX_REQUEST = 64 * 1024
#: The longest answer a client reads. What plugins make the host hold is bounded per plugin,
#: not in all: one plugin's config options alone list as ~10 MiB of JSON (control characters
#: escaped), so a smaller bound would let one plugin hide everyone's options from the person.
MAX_REPLY = 256 << 20
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, NUL included
Handler = Callable[[dict[str, Any]], Any]
#: `plugin_of(pid)`: the plugin a process belongs to, None when it belongs to none.
PluginOf = Callable[[int], "str | None"]


class ControlError(LoaderError):
    """The control socket could not be reached, or the host refused the request."""


class ControlServer:
    """Serves requests on `path` until `close()`; one thread per connection."""

    def __init__(self, path: Path, handler: Handler, plugin_of: PluginOf = lambda _: None) -> None:
        self.path = path
        self._handler = handler
        self._plugin_of = plugin_of
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._serving: set[threading.Thread] = set()  # requests being answered
        self._serving_lock = threading.Lock()

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        if self.path.exists():
            if _alive(self.path):
                raise ControlError(f"a host is already running here ({self.path} answers)")
            self.path.unlink()
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise ControlError(
                f"the control socket path {self.path} is longer than unix sockets allow "
                f"({MAX_SOCKET_PATH} bytes); use a shorter --home"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        except OSError as err:
            sock.close()
            raise ControlError(f"cannot listen on {self.path}: {err.strerror or err}") from err
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._serving_lock:  # a request under way (`stop` itself) gets its answer
            serving = list(self._serving)
        for thread in serving:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._serving_lock:
                self._serving.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            with self._serving_lock:
                self._serving.discard(threading.current_thread())

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                refusal = self._refusal(*peer_credentials(conn)[:2])
                line = b"" if refusal else _read_line(conn, MAX_REQUEST * 16)
            except (OSError, ValueError):
                return  # the peer went away or sent too much: nobody to answer
            reply = {"ok": False, "error": refusal} if refusal else self._result(line)
            self._reply(conn, reply)

    def _result(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line: its result, or one sentence why not."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError('a request is a JSON object with a string "op"')
            return {"ok": True, "result": self._handler(request)}
        except (LoaderError, ValueError, LookupError, TypeError, RuntimeError, OSError) as err:
            return {"ok": False, "error": _sentence(err)}
        except Exception as err:  # a bug of ours: still one answer, never a dropped line
            log.exception("control request failed")
            return {"ok": False, "error": f"the host failed to answer: {_sentence(err)}"}

    def _refusal(self, pid: int, uid: int) -> str:
        """Why this peer may not ask ("" when it may): not the host's owner, or a process of
        a plugin (sandboxed in a PID namespace of its own, or started by the host)."""
        if uid != os.getuid():
            return "only the host's owner may ask"
        owner = self._plugin_of(pid) if pid > 0 else None
        if owner is not None or not in_host_pid_namespace(pid):
            who = f"plugin {owner}" if owner else "a sandboxed plugin"
            log.warning("control socket: refused pid %d, a process of %s", pid, who)
            return f"a process of {who} may not use the host's control socket"
        return ""

    @staticmethod
    def _reply(conn: socket.socket, reply: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(reply).encode() + b"\n")


def request(path: Path, op: str, timeout: float = 30.0, **args: Any) -> Any:
    """Ask the host listening on `path`; returns its result or raises `ControlError`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise ControlError(
                f"no host is running for this state root ({path} does not answer); "
                f"start one with `pm-plugins boot`"
            ) from err
        except PermissionError as err:
            raise ControlError(f"{path} belongs to another user") from err
        sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        line = _read_line(sock, MAX_REPLY)
    except (OSError, ValueError) as err:
        raise ControlError(f"the host at {path} did not answer ({err})") from err
    finally:
        sock.close()
    try:
        reply = json.loads(line)
    except ValueError as err:
        raise ControlError(f"the host at {path} answered something that is not JSON") from err
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "the host refused the request")))
    return reply.get("result")


def running_versions(path: Path, timeout: float = 5.0) -> dict[str, str] | None:
    """The plugin versions the host listening on `path` runs or is starting (None: no host
    answers): what `install` and the dashboard compare a new release with."""
    try:
        modules = request(path, "status", timeout=timeout)["modules"]
        return {
            m["name"]: m.get("version") or ""
            for m in modules
            if m.get("kind") == "plugin" and m.get("state") in ("running", "starting")
        }
    except (ControlError, KeyError, TypeError, AttributeError):
        return None


def _read_line(sock: socket.socket, limit: int) -> bytes:
    data = bytearray()  # appended in place: a long answer is read in linear time
    while not data.endswith(b"\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("the message is too large")
    return bytes(data)


def _sentence(err: Exception) -> str:
    """The error's own words (a KeyError's str() is the repr of its argument)."""
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err)


def _alive(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
