#!/usr/bin/env python3
"""Prototype: decisions over a raw unix socket, length-prefixed protobuf, no gRPC.

`raw_decider.py FD`: read `u32 length + DecisionBatch` from the socket FD, answer each
request with pm_plugin's own streamed-decider code, write `u32 length + VerdictBatch`.
What a decision costs when the extension hands the host a plain socket (e.g. announced
over the go-plugin broker) instead of a gRPC stream.
"""

from __future__ import annotations

import socket
import struct
import sys

from pm_plugin._framework import Plugin
from pm_plugin._server import _StreamDecider
from pm_plugin.types import Decision, Verdict
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import network_pb2

HEADER = struct.Struct("!I")
ACCEPT = Decision(Verdict.ACCEPT, "bench")


def decide(conn: network_pb2.Connection) -> Decision:
    return ACCEPT


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise EOFError
        data += more
    return data


def main() -> None:
    plugin = Plugin()
    plugin.register_decider(decide)
    one = _StreamDecider(plugin)._one
    sock = socket.socket(fileno=int(sys.argv[1]))
    while True:
        try:
            (size,) = HEADER.unpack(read_exactly(sock, HEADER.size))
            batch = extensions_pb2.DecisionBatch.FromString(read_exactly(sock, size))
        except EOFError:
            return
        reply = extensions_pb2.VerdictBatch(decisions=[one(r) for r in batch.requests])
        body = reply.SerializeToString()
        sock.sendall(HEADER.pack(len(body)) + body)


if __name__ == "__main__":
    main()
