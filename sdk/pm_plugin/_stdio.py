"""Where a served plugin's output goes: `logging` and `print()`.

go-plugin hosts read the plugin's stderr as hclog JSON lines (keeping each line's level)
and take its stdout and stderr writes over the GRPCStdio stream. This module holds the
hclog formatter, the stand-in for sys.stdout/sys.stderr that buffers writes for the
stream, and the GRPCStdio servicer that drains them to the host; `_server.serve()` puts
them in place once the handshake line is out.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import queue
import traceback
from collections.abc import Iterator
from typing import Any, cast

import grpc
from google.protobuf import empty_pb2

from pm_plugin.wire.goplugin import grpc_stdio_pb2, grpc_stdio_pb2_grpc

#: print() output kept for the host's stdio stream before the oldest is dropped.
STDIO_BUFFER = 1024


class _StdioForwarder(io.TextIOBase):
    """A stand-in for sys.stdout/sys.stderr whose writes go to the GRPCStdio stream."""

    def __init__(self, channel: int, sink: queue.Queue[grpc_stdio_pb2.StdioData]) -> None:
        self._channel, self._sink = channel, sink

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            data = grpc_stdio_pb2.StdioData(channel=cast(Any, self._channel), data=text.encode())
            while True:
                try:
                    self._sink.put_nowait(data)
                    break
                except queue.Full:  # never block the plugin: drop the oldest
                    with contextlib.suppress(queue.Empty):
                        self._sink.get_nowait()
        return len(text)


class _Stdio(grpc_stdio_pb2_grpc.GRPCStdioServicer):
    def __init__(self, sink: queue.Queue[grpc_stdio_pb2.StdioData]) -> None:
        self._sink = sink

    def StreamStdio(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[grpc_stdio_pb2.StdioData]:
        while context.is_active():
            try:
                yield self._sink.get(timeout=0.2)
            except queue.Empty:
                continue


class _HclogJSON(logging.Formatter):
    """hclog's JSON line format, which go-plugin hosts (and ours) parse for the level."""

    LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(
            {
                "@level": self.LEVELS.get(record.levelname, "error"),
                "@message": message,
                "@module": record.name,
                # hclog's layout; go-plugin refuses a line whose timestamp differs
                "@timestamp": datetime.datetime.now().astimezone().isoformat("T", "microseconds"),
            }
        )
