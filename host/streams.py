"""The fast transports of our extension services: many decisions and reports per connection.

Why this exists: besides the PR's unary calls, a plugin built with `pm_plugin` may offer a
streamed decider (`pmplugin.v1.StreamDeciderService/Decide`), a decision socket speaking
`pm_plugin.framing` frames, and a streamed reporter. Each is a small client with its own
threads, locks and failure rules; `host.client.PluginClient` opens them on demand and the
runtime picks the best one a plugin offers.
"""

from __future__ import annotations

import itertools
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError

from host.errors import PluginCallError
from host.peers import peer_pid
from host.plugin_text import loggable
from pm_plugin.framing import FrameError, read_frame, write_frame
from pm_plugin.wire.pmplugin.v1 import extensions_pb2, extensions_pb2_grpc
from pm_plugin.wire.portmaster import network_pb2

__all__ = ["DecisionSocket", "StreamAnswer", "StreamedDecider", "StreamedReporter"]


@dataclass
class StreamAnswer:
    """One decision from the streamed decider."""

    verdict: int
    reason: str
    cache_ttl: float
    error: str = ""


def _call_error(name: str, what: str, err: grpc.RpcError) -> PluginCallError:
    call = cast(grpc.Call, err)
    code = call.code()
    detail = loggable(call.details() or "", 512)  # the plugin's words: escaped, bounded
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PluginCallError(f"plugin {name}: {what} timed out")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return PluginCallError(f"plugin {name}: {what} reply was oversized ({detail})")
    label = code.name if code is not None else "UNKNOWN"
    return PluginCallError(f"plugin {name}: {what} failed: {label}: {detail}")


class StreamedDecider:
    """Many decisions in flight over one `pmplugin.v1.StreamDeciderService/Decide` stream."""

    def __init__(self, channel: grpc.Channel, name: str) -> None:
        self.name = name
        self._requests: queue.SimpleQueue[extensions_pb2.DecisionBatch | None] = queue.SimpleQueue()
        self._pending: dict[int, Future[StreamAnswer]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        stub = extensions_pb2_grpc.StreamDeciderServiceStub(channel)
        self._call = stub.Decide(iter(self._requests.get, None))
        self._reader = threading.Thread(
            target=self._read, name=f"pm-plugins-stream-{name}", daemon=True
        )
        self._reader.start()

    def submit(self, *connections: network_pb2.Connection) -> list[Future[StreamAnswer]]:
        """Send one batch; each future resolves with its decision or a PluginCallError."""
        futures: list[Future[StreamAnswer]] = []
        batch = extensions_pb2.DecisionBatch()
        with self._lock:
            if self._closed:
                raise PluginCallError(f"plugin {self.name}: the decision stream is closed")
            for conn in connections:
                request_id = next(self._ids)
                future: Future[StreamAnswer] = Future()
                self._pending[request_id] = future
                futures.append(future)
                batch.requests.add(id=request_id, connection=conn)
        self._requests.put(batch)
        return futures

    def _read(self) -> None:
        error: PluginCallError | None = None
        try:
            for reply in self._call:
                for decision in reply.decisions:
                    with self._lock:
                        future = self._pending.pop(decision.id, None)
                    if future is not None:
                        future.set_result(
                            StreamAnswer(
                                decision.verdict,
                                decision.reason,
                                decision.cache_ttl_ms / 1000.0,
                                decision.error,
                            )
                        )
        except grpc.RpcError as err:
            error = _call_error(self.name, "the decision stream", err)
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(
                error or PluginCallError(f"plugin {self.name}: the decision stream ended")
            )

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(2.0)


class DecisionSocket:
    """The streamed decider over the plugin's decision socket (pm_plugin.framing frames).

    Each decision in flight uses its own connection, taken from a small pool of idle ones,
    and the calling thread writes the request and reads the answer itself: no hand-off
    between threads, so one decision costs about a socket round trip plus the plugin's work.
    A connection that timed out or broke is closed, never reused (a late reply can't be
    mistaken for the next one). Every new connection must be served by the plugin process.
    """

    #: Idle connections kept for reuse.
    POOL = 8

    def __init__(self, path: str, name: str, owns: Callable[[int], bool]) -> None:
        self.path, self.name, self._owns = path, name, owns
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False

    def _take(self, timeout: float) -> socket.socket:
        with self._lock:
            if self._closed:
                raise PluginCallError(f"plugin {self.name}: the decision socket is closed")
            if self._idle:
                return self._idle.pop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.path)
            peer = peer_pid(sock)
        except OSError:
            sock.close()
            raise
        if not self._owns(peer):
            sock.close()
            raise PluginCallError(
                f"plugin {self.name}: its decision socket is served by pid {peer}, "
                "which is not the plugin"
            )
        return sock

    def _give_back(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.POOL:
                self._idle.append(sock)
                return
        sock.close()

    def decide(self, connection: network_pb2.Connection, timeout: float) -> StreamAnswer:
        """One decision, answered within `timeout` seconds or a PluginCallError."""
        deadline = time.monotonic() + timeout
        try:
            sock = self._take(timeout)
        except OSError as err:
            raise PluginCallError(f"plugin {self.name}: the decision socket failed: {err}") from err
        try:
            decision = self._exchange(sock, connection, deadline)
        except BaseException:
            sock.close()
            raise
        self._give_back(sock)
        return StreamAnswer(
            decision.verdict, decision.reason, decision.cache_ttl_ms / 1000.0, decision.error
        )

    def _exchange(
        self, sock: socket.socket, connection: network_pb2.Connection, deadline: float
    ) -> extensions_pb2.Decision:
        request_id = next(self._ids)
        batch = extensions_pb2.DecisionBatch()
        batch.requests.add(id=request_id, connection=connection)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            write_frame(sock, batch.SerializeToString())
            payload = read_frame(sock, deadline)
            if payload is None:
                raise PluginCallError(f"plugin {self.name}: the decision socket was closed")
            reply = extensions_pb2.VerdictBatch.FromString(payload)
        except TimeoutError as err:  # socket.timeout is TimeoutError
            raise PluginCallError(f"plugin {self.name}: decision timed out") from err
        except (OSError, FrameError, DecodeError) as err:
            raise PluginCallError(f"plugin {self.name}: the decision socket failed: {err}") from err
        if len(reply.decisions) != 1 or reply.decisions[0].id != request_id:
            raise PluginCallError(
                f"plugin {self.name}: the decision socket answered another request"
            )
        decision: extensions_pb2.Decision = reply.decisions[0]
        return decision

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


class StreamedReporter:
    """Report batches over one `pmplugin.v1.StreamReporterService/Report` stream."""

    def __init__(self, channel: grpc.Channel, name: str) -> None:
        self.name = name
        self._stub = extensions_pb2_grpc.StreamReporterServiceStub(channel)
        self._requests: queue.SimpleQueue[extensions_pb2.ReportBatch | None] | None = None
        self._call: Any = None

    def send(self, connections: list[network_pb2.Connection]) -> None:
        """Queue one batch on the stream, (re)opening it if it ended.

        Raises:
            PluginCallError: the previous stream ended with an error (the batch is not sent).
        """
        if self._call is not None and self._call.done():
            call, self._call = self._call, None
            try:
                call.result()
            except grpc.RpcError as err:
                raise _call_error(self.name, "the report stream", err) from err
        if self._call is None:
            self._requests = queue.SimpleQueue()
            self._call = self._stub.Report.future(iter(self._requests.get, None))
        assert self._requests is not None
        self._requests.put(extensions_pb2.ReportBatch(connections=connections))

    def close(self, timeout: float = 2.0) -> None:
        if self._requests is not None and self._call is not None:
            self._requests.put(None)
            try:
                self._call.result(timeout=timeout)
            except (grpc.RpcError, grpc.FutureTimeoutError):
                self._call.cancel()


def _why(err: BaseException) -> str:
    """A gRPC failure in a few words, never a multi-line repr."""
    if isinstance(err, grpc.FutureTimeoutError):
        return "no answer in time"
    call = cast(grpc.Call, err)
    return f"{call.code().name}: {loggable(call.details() or '', 200)}"
