"""Landlock rules for a plugin that declared network: only its TCP ports, no host sockets.

Why this exists: a plugin that declares network shares the host's network namespace, which
by itself grants every destination and every abstract unix socket of the machine (those live
in the network namespace, not the filesystem). Landlock (Linux 6.7+: ABI 4 for TCP ports,
ABI 6 for scopes) narrows that from inside the sandbox, for the plugin and everything it
starts: `connect` only to the declared TCP ports (and no TCP `bind`), no connection to an
abstract unix socket made outside the plugin, no signal to a process outside it. UDP ports
cannot be restricted by Landlock; a `udp:` declaration grants UDP as the host has it.

This file runs two ways: the host imports it to ask the kernel's Landlock ABI, and the
sandbox runs it as a script (`python -I -S landlock.py --tcp 443,80 -- ARGV...`, standard
library only) between dropping privileges and the plugin's first instruction; it restricts
itself, then `exec`s the plugin. It refuses to exec when a rule cannot be applied.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
import sys

#: The system calls have the same numbers on every architecture.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_RULE_NET_PORT = 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2
#: The ABI that can restrict TCP ports, and the one that can scope sockets and signals.
PORTS_ABI, SCOPES_ABI = 4, 6


def _syscall(number: int, *args: object) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result = int(libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


@functools.cache
def abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    try:
        return _syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0


def restrict(tcp_ports: list[int] | None) -> None:
    """Restrict this process and its future children: TCP connect to `tcp_ports` only
    (None: any TCP), and, where the kernel scopes, no abstract unix socket or signal outside.

    Raises:
        OSError: the kernel refused a step (the caller must not run the plugin then).
    """
    version = abi()
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if tcp_ports is not None else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if version >= SCOPES_ABI else 0
    if net and version < PORTS_ABI:
        raise OSError(f"Landlock ABI {version} cannot restrict TCP ports (needs {PORTS_ABI})")
    attr = struct.pack("=QQQ", 0, net, scoped)
    size = len(attr) if scoped else 16
    ruleset = ctypes.create_string_buffer(attr, len(attr))
    fd = _syscall(_CREATE_RULESET, ruleset, ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for port in tcp_ports or ():
            rule = ctypes.create_string_buffer(struct.pack("=QQ", _NET_CONNECT_TCP, port), 16)
            _syscall(_ADD_RULE, ctypes.c_int(fd), ctypes.c_int(_RULE_NET_PORT), rule, 0)
        _syscall(_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0))
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """`--tcp PORTS|any -- COMMAND...`: restrict, then exec COMMAND."""
    if len(argv) < 4 or argv[0] != "--tcp" or argv[2] != "--":
        print("usage: landlock.py --tcp PORT[,PORT...]|any -- COMMAND...", file=sys.stderr)
        return 2
    ports = None if argv[1] == "any" else [int(p) for p in argv[1].split(",") if p]
    try:
        restrict(ports)
    except OSError as err:
        print(f"the plugin's network rules cannot be applied: {err}", file=sys.stderr)
        return 1
    os.execv(argv[3], argv[3:])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
