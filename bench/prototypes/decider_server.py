#!/usr/bin/env python3
"""A bare DeciderService + StreamDeciderService server, sync (as pm_plugin) or grpc.aio.

`decider_server.py sync|aio SOCKET_PATH`: serve on unix:SOCKET_PATH, print "ready", and
serve until stdin closes. The sync server is pm_plugin's own servicers on pm_plugin's
server settings; the aio one answers the same way from coroutines. No handshake, broker or
Configure: this isolates the server's gRPC architecture.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from pm_plugin._framework import Plugin
from pm_plugin._server import _Decider, _StreamDecider
from pm_plugin.types import Decision, Verdict, as_decision, wire_verdict
from pm_plugin.wire.pmplugin.v1 import extensions_pb2, extensions_pb2_grpc
from pm_plugin.wire.portmaster import decider_pb2, decider_pb2_grpc, network_pb2

OPTIONS = [
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
]
ACCEPT = Decision(Verdict.ACCEPT, "bench")


def decide(conn: network_pb2.Connection) -> Decision:
    return ACCEPT


class AioDecider(decider_pb2_grpc.DeciderServiceServicer):
    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin

    async def DecideOnConnection(  # type: ignore[override]
        self,
        request: decider_pb2.DecideOnConnectionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> decider_pb2.DecideOnConnectionResponse:
        assert self._plugin.decider is not None
        decision = as_decision(self._plugin.decider(request.connection))
        return decider_pb2.DecideOnConnectionResponse(
            verdict=wire_verdict(decision.verdict), reason=decision.reason
        )


class AioStreamDecider(extensions_pb2_grpc.StreamDeciderServiceServicer):
    def __init__(self, plugin: Plugin) -> None:
        self._sync = _StreamDecider(plugin)

    async def Decide(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[extensions_pb2.DecisionBatch],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[extensions_pb2.VerdictBatch]:
        async for batch in request_iterator:
            yield extensions_pb2.VerdictBatch(
                decisions=[self._sync._one(r) for r in batch.requests]
            )


def wait_for_stdin_eof() -> None:
    sys.stdin.read()


def serve_sync(plugin: Plugin, path: str) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=32), options=OPTIONS)
    decider_pb2_grpc.add_DeciderServiceServicer_to_server(_Decider(plugin), server)
    extensions_pb2_grpc.add_StreamDeciderServiceServicer_to_server(_StreamDecider(plugin), server)
    server.add_insecure_port(f"unix:{path}")
    server.start()
    print("ready", flush=True)
    wait_for_stdin_eof()
    server.stop(None)


async def serve_aio(plugin: Plugin, path: str) -> None:
    server = grpc.aio.server(options=OPTIONS)
    decider_pb2_grpc.add_DeciderServiceServicer_to_server(AioDecider(plugin), server)
    extensions_pb2_grpc.add_StreamDeciderServiceServicer_to_server(AioStreamDecider(plugin), server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    print("ready", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_stdin() -> None:
        wait_for_stdin_eof()
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    await done.wait()
    await server.stop(None)


def main() -> None:
    kind, path = sys.argv[1], sys.argv[2]
    plugin = Plugin()
    plugin.register_decider(decide)
    if kind == "sync":
        serve_sync(plugin, path)
    elif kind == "aio":
        asyncio.run(serve_aio(plugin, path))
    else:
        sys.exit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main()
