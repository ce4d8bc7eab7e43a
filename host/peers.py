"""Who is at the other end of a unix socket, and whether that process belongs to a plugin.

Why this exists: every channel between the host and a plugin authenticates the process, not
the path: the kernel's SO_PEERCRED says which pid connected, and the host knows which
processes it started. A plugin's processes are the one the host started (bubblewrap, when
sandboxed) and its descendants; a descendant that left the process group with `setsid()` is
still found through its parent chain, which inside the plugin's PID namespace always leads
back to the sandbox.
"""

from __future__ import annotations

import os
import socket
import struct

__all__ = [
    "descends_from",
    "in_host_pid_namespace",
    "peer_credentials",
    "peer_pid",
    "socket_peer_pid",
]

#: The deepest parent chain followed (a plugin cannot make the check loop forever).
MAX_DEPTH = 256


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected unix socket
    (SO_PEERCRED: the kernel's word, not the peer's)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return int(pid), int(uid), int(gid)


def peer_pid(sock: socket.socket) -> int:
    """The pid of the process at the other end of a connected unix socket."""
    return peer_credentials(sock)[0]


def socket_peer_pid(path: str) -> int:
    """The pid of the process serving the unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        sock.connect(path)
        return peer_pid(sock)


def parent_of(pid: int) -> int | None:
    """The parent pid of `pid` from /proc, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ")"
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def descends_from(pid: int, ancestors: set[int]) -> bool:
    """Whether `pid` is one of `ancestors` or a descendant of one."""
    current: int | None = pid
    for _ in range(MAX_DEPTH):
        if current is None or current <= 1:
            return False
        if current in ancestors:
            return True
        current = parent_of(current)
    return False


def in_host_pid_namespace(pid: int) -> bool:
    """Whether `pid` lives in the host's own PID namespace; a sandboxed plugin's processes
    (orphans included) never do. False when it cannot be told: callers refuse then."""
    if pid <= 0:  # SO_PEERCRED gives 0 for a peer whose namespace cannot see us
        return False
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return False
