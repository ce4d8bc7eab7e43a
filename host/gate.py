"""A unix socket that serves only the processes of one plugin.

Why this exists: the host services a plugin reaches over go-plugin's broker act under the
identity of the connection they were reached on, and gRPC's Python server cannot tell which
process is at the other end of a unix socket. The gate listens on the plugin-facing path,
asks the kernel (SO_PEERCRED) which pid connected, and passes the bytes on to the real
server, whose socket lies in a folder only the host can reach, only when that pid is the
plugin's own process or one of its descendants. Any other peer is closed at once and logged.
A sandboxed plugin cannot see another plugin's socket at all; the gate is what holds when the
sandbox is off (`best-effort`) or a path leaks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from host.peers import peer_pid

__all__ = ["GatedServer", "PeerGate", "serve_gated"]

log = logging.getLogger("pm_plugins.gate")

#: Connections one plugin may hold open to its gate at once (gRPC needs one).
MAX_CONNECTIONS = 8
_CHUNK = 64 * 1024
#: Refusals logged one by one; after these, every thousandth (a connect loop floods nothing).
LOGGED_REFUSALS = 10


class PeerGate:
    """Listens on `public_path`; relays a connection to `inner_path` only when `allowed(pid)`
    says its peer belongs to the plugin."""

    def __init__(
        self,
        name: str,
        public_path: str,
        inner_path: str,
        allowed: Callable[[int], bool],
        uid: int | None = None,
    ) -> None:
        self.name = name
        self.public_path = public_path
        self.inner_path = inner_path
        self._allowed = allowed
        self._uid = uid  # the plugin's own uid, when the host is root
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.refused = 0

    def start(self) -> None:
        """Bind and give the socket to the plugin's uid in the host-only folder, then move
        it into the plugin's socket folder: nothing the plugin can swap (a symlink in its
        own folder) is ever followed by the host's chown."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staged = os.path.join(os.path.dirname(self.inner_path), "public")
        old = os.umask(0o177)
        try:
            listener.bind(staged)
            if self._uid is not None:
                os.chown(staged, self._uid, self._uid, follow_symlinks=False)
            os.rename(staged, self.public_path)  # replaces whatever entry is there
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old)
        listener.listen(MAX_CONNECTIONS)
        self._listener = listener
        threading.Thread(target=self._accept, name=f"gate-{self.name}", daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for conn in list(self._open):
                _close(conn)
            self._open.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.public_path)

    def _accept(self) -> None:
        while (listener := self._listener) is not None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                pid = peer_pid(conn)
            except OSError:
                pid = 0
            if not self._admit(conn, pid):
                _close(conn)
                continue
            try:
                inner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                inner.connect(self.inner_path)
            except OSError as err:
                log.warning("gate of plugin %s: host services do not answer: %s", self.name, err)
                _close(conn)
                continue
            with self._lock:
                self._open.update((conn, inner))
            for src, dst in ((conn, inner), (inner, conn)):
                threading.Thread(
                    target=self._pump, args=(src, dst), name=f"gate-{self.name}", daemon=True
                ).start()

    def _admit(self, conn: socket.socket, pid: int) -> bool:
        """Whether the peer is the plugin's; logs a refusal in one line."""
        with self._lock:
            full = len(self._open) >= 2 * MAX_CONNECTIONS
        if pid > 0 and self._allowed(pid) and not full:
            return True
        self.refused += 1
        why = "too many connections" if full else f"pid {pid} is not a process of the plugin"
        if self.refused <= LOGGED_REFUSALS or self.refused % 1000 == 0:  # a flood logs little
            log.warning(
                "host services of plugin %s: refused a connection: %s (%d refused)",
                self.name, why, self.refused,
            )  # fmt: skip
        return False

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(_CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            if src in self._open:
                self._open.discard(src)
                _close(src)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@dataclass
class GatedServer:
    """A host-services server behind its gate; stopping it stops both."""

    server: grpc.Server
    gate: PeerGate
    inner_dir: str

    def stop(self, grace: float | None) -> threading.Event:
        self.gate.close()
        done = self.server.stop(grace)
        shutil.rmtree(self.inner_dir, ignore_errors=True)
        return done


def serve_gated(
    serve: Callable[[str, bool, str], grpc.Server],
    name: str,
    privileged: bool,
    public_path: str,
    *,
    allowed: Callable[[int], bool],
    uid: int | None,
) -> GatedServer:
    """Serve `serve(name, privileged, path)` on a host-only socket, reachable from the plugin
    only through a gate on `public_path`."""
    inner_dir = tempfile.mkdtemp(prefix="pm-plugins-hs-")  # 0700, the host's
    try:
        server = serve(name, privileged, os.path.join(inner_dir, "s"))
    except BaseException:
        shutil.rmtree(inner_dir, ignore_errors=True)
        raise
    gate = PeerGate(name, public_path, os.path.join(inner_dir, "s"), allowed, uid)
    try:
        gate.start()
    except OSError:
        server.stop(None)
        shutil.rmtree(inner_dir, ignore_errors=True)
        raise
    return GatedServer(server, gate, inner_dir)
