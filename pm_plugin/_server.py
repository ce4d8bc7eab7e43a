"""go-plugin's server side for a Python plugin: what `serve()` does, in order.

1. Check the magic cookie; without it print one sentence on stderr and exit 1 (the binary
   was run by hand). Check that the host offered app protocol version 1.
2. Listen on `plugin.sock` in a fresh 0700 directory (under `PLUGIN_UNIX_SOCKET_DIR`, else
   the temp dir) and serve: health (service `plugin`), broker, controller, stdio, the PR's
   BaseService and registered types, and our extensions.
3. Print the handshake line `1|1|unix|<path>|grpc|` and flush.
4. Route `logging` to the real stderr as hclog JSON lines (the host keeps their level) and
   `print()` output to the GRPCStdio stream.
5. Run until GRPCController.Shutdown, SIGTERM, or 1 s after BaseService.Shutdown; then stop
   the server, remove the socket directory, and exit 0.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, cast

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pm_plugin._broker import MAX_MESSAGE, PluginBroker
from pm_plugin._framework import Plugin
from pm_plugin.framing import FrameError, read_frame, write_frame
from pm_plugin.hooks import HOOK_POINTS, HookError, NullPlugin, implemented_hooks, method_name
from pm_plugin.types import Decision, as_decision, wire_verdict
from pm_plugin.wire.goplugin import (
    grpc_broker_pb2_grpc,
    grpc_controller_pb2,
    grpc_controller_pb2_grpc,
    grpc_stdio_pb2,
    grpc_stdio_pb2_grpc,
)
from pm_plugin.wire.pmplugin.v1 import extensions_pb2, extensions_pb2_grpc
from pm_plugin.wire.portmaster import (
    base_pb2,
    base_pb2_grpc,
    decider_pb2,
    decider_pb2_grpc,
    reporter_pb2,
    reporter_pb2_grpc,
    resolver_pb2,
    resolver_pb2_grpc,
)

COOKIE_KEY, COOKIE_VALUE = "PORTMASTER_PLUGIN", "hello"
CORE_PROTOCOL_VERSION, APP_PROTOCOL_VERSION = 1, 1
#: A framework plugin exits by itself this long after BaseService.Shutdown returns.
EXIT_AFTER_SHUTDOWN = 1.0
#: print() output kept for the host's stdio stream before the oldest is dropped.
STDIO_BUFFER = 1024

log = logging.getLogger("pm_plugin")


class _Lifecycle:
    """When to stop: set by the controller, by SIGTERM, or shortly after Shutdown."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def stop_later(self, delay: float) -> None:
        timer = threading.Timer(delay, self.stop.set)
        timer.daemon = True
        timer.start()


def _abort(context: grpc.ServicerContext, err: BaseException, what: str) -> NoReturn:
    log.error("%s failed: %s", what, err, exc_info=err)
    context.abort(grpc.StatusCode.UNKNOWN, str(err) or type(err).__name__)
    raise AssertionError("unreachable")  # context.abort raises


class _Base(base_pb2_grpc.BaseServiceServicer):
    def __init__(self, plugin: Plugin, broker: PluginBroker, lifecycle: _Lifecycle) -> None:
        self._plugin, self._broker, self._lifecycle = plugin, broker, lifecycle

    def Configure(
        self, request: base_pb2.ConfigureRequest, context: grpc.ServicerContext
    ) -> base_pb2.ConfigureResponse:
        channel = None
        if request.backchannel_id:
            try:
                channel = self._broker.dial(request.backchannel_id)
            except (TimeoutError, ValueError) as err:
                context.abort(grpc.StatusCode.UNKNOWN, str(err))
        try:
            self._plugin.configure(request, channel)
        except Exception as err:
            _abort(context, err, "on-init")
        return base_pb2.ConfigureResponse()

    def Shutdown(
        self, request: base_pb2.ShutdownRequest, context: grpc.ServicerContext
    ) -> base_pb2.ShutdownResponse:
        try:
            self._plugin.shutdown()
        except Exception as err:
            _abort(context, err, "on-shutdown")
        finally:
            self._lifecycle.stop_later(EXIT_AFTER_SHUTDOWN)
        return base_pb2.ShutdownResponse()


class _Controller(grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, lifecycle: _Lifecycle) -> None:
        self._lifecycle = lifecycle

    def Shutdown(
        self, request: grpc_controller_pb2.Empty, context: grpc.ServicerContext
    ) -> grpc_controller_pb2.Empty:
        self._lifecycle.stop_later(0.05)  # let this reply leave first
        return grpc_controller_pb2.Empty()


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


class _Decider(decider_pb2_grpc.DeciderServiceServicer):
    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin

    def DecideOnConnection(
        self, request: decider_pb2.DecideOnConnectionRequest, context: grpc.ServicerContext
    ) -> decider_pb2.DecideOnConnectionResponse:
        assert self._plugin.decider is not None
        try:
            decision = as_decision(self._plugin.decider(request.connection))
        except Exception as err:
            _abort(context, err, "decider")
        return decider_pb2.DecideOnConnectionResponse(
            verdict=wire_verdict(decision.verdict), reason=decision.reason
        )


class _StreamDecider(extensions_pb2_grpc.StreamDeciderServiceServicer):
    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin

    def decide_one(self, request: extensions_pb2.DecisionRequest) -> extensions_pb2.Decision:
        assert self._plugin.decider is not None
        try:
            decision: Decision = as_decision(self._plugin.decider(request.connection))
        except Exception as err:
            log.error("decider failed: %s", err, exc_info=err)
            return extensions_pb2.Decision(id=request.id, error=str(err) or type(err).__name__)
        return extensions_pb2.Decision(
            id=request.id,
            verdict=wire_verdict(decision.verdict),
            reason=decision.reason,
            cache_ttl_ms=max(0, int(decision.cache_ttl * 1000)),
        )

    def Decide(
        self,
        request_iterator: Iterator[extensions_pb2.DecisionBatch],
        context: grpc.ServicerContext,
    ) -> Iterator[extensions_pb2.VerdictBatch]:
        for batch in request_iterator:
            yield extensions_pb2.VerdictBatch(
                decisions=[self.decide_one(r) for r in batch.requests]
            )


class _DecisionSocket:
    """Serves the streamed decider's messages on a plain unix socket (see framing.py):
    one thread per host connection reads a DecisionBatch frame, decides, writes the
    VerdictBatch frame. The host opens one connection per decision in flight."""

    def __init__(self, path: str, decider: _StreamDecider) -> None:
        self.path = path
        self._decider = decider
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        os.chmod(path, 0o600)
        self._listener.listen(64)
        threading.Thread(target=self._accept, name="pm-plugin-decide", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed at shutdown
            threading.Thread(
                target=self._serve, args=(conn,), name="pm-plugin-decide", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while (payload := read_frame(conn)) is not None:
                    batch = extensions_pb2.DecisionBatch.FromString(payload)
                    reply = extensions_pb2.VerdictBatch(
                        decisions=[self._decider.decide_one(r) for r in batch.requests]
                    )
                    write_frame(conn, reply.SerializeToString())
            except (OSError, FrameError, DecodeError) as err:
                log.debug("decision socket connection ended: %s", err)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


class _Reporter(reporter_pb2_grpc.ReporterServiceServicer):
    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin

    def ReportConnection(
        self, request: reporter_pb2.ReportConnectionRequest, context: grpc.ServicerContext
    ) -> reporter_pb2.ReportConnectionRespose:
        assert self._plugin.reporter is not None
        try:
            self._plugin.reporter(request.connection)
        except Exception as err:
            _abort(context, err, "reporter")
        return reporter_pb2.ReportConnectionRespose()


class _StreamReporter(extensions_pb2_grpc.StreamReporterServiceServicer):
    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin

    def Report(
        self,
        request_iterator: Iterator[extensions_pb2.ReportBatch],
        context: grpc.ServicerContext,
    ) -> extensions_pb2.ReportSummary:
        assert self._plugin.reporter is not None
        received = failed = 0
        for batch in request_iterator:
            for connection in batch.connections:
                received += 1
                try:
                    self._plugin.reporter(connection)
                except Exception as err:
                    failed += 1
                    log.error("reporter failed: %s", err, exc_info=err)
        return extensions_pb2.ReportSummary(received=received, failed=failed)


class _Resolver(resolver_pb2_grpc.ResolverServiceServicer):
    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin

    def Resolve(
        self, request: resolver_pb2.ResolveRequest, context: grpc.ServicerContext
    ) -> resolver_pb2.ResolveResponse:
        assert self._plugin.resolver is not None
        try:
            result = self._plugin.resolver(request.question, request.connection)
        except Exception as err:
            _abort(context, err, "resolver")
        reply = resolver_pb2.ResolveResponse()
        if result is not None:  # presence is the answer: set it even when empty
            reply.response.SetInParent()
            reply.response.CopyFrom(result)
        return reply


class _Hooks(extensions_pb2_grpc.HookServiceServicer):
    def __init__(self, hooks: NullPlugin) -> None:
        self._hooks = hooks

    def RunHook(
        self, request: extensions_pb2.HookRequest, context: grpc.ServicerContext
    ) -> extensions_pb2.HookResponse:
        if request.hook_point not in HOOK_POINTS:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown hook point {request.hook_point!r}"
            )
        fn = getattr(self._hooks, method_name(request.hook_point))
        try:
            entity = fn(request.entity, request.data_entity)
        except HookError as err:
            context.abort(grpc.StatusCode.ABORTED, str(err))
        except Exception as err:
            _abort(context, err, f"hook {request.hook_point}")
        return extensions_pb2.HookResponse(entity=entity)


class _Extensions(extensions_pb2_grpc.ExtensionServiceServicer):
    def __init__(self, plugin: Plugin, decision_socket: str) -> None:
        self._plugin = plugin
        self._decision_socket = decision_socket

    def Describe(
        self, request: extensions_pb2.DescribeRequest, context: grpc.ServicerContext
    ) -> extensions_pb2.DescribeResponse:
        hooks = self._plugin.hooks
        return extensions_pb2.DescribeResponse(
            streamed_decider=self._plugin.decider is not None,
            streamed_reporter=self._plugin.reporter is not None,
            decision_socket=self._decision_socket,
            hook_points=implemented_hooks(hooks) if hooks is not None else [],
        )


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


def _fail(sentence: str) -> NoReturn:
    sys.stderr.write(sentence + "\n")
    sys.stderr.flush()
    sys.exit(1)


def _check_environment() -> None:
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        _fail(
            "This program is a pm-plugins plugin: it is started by its host (pm-plugins "
            "or Portmaster), not by hand."
        )
    offered = os.environ.get("PLUGIN_PROTOCOL_VERSIONS", str(APP_PROTOCOL_VERSION))
    if str(APP_PROTOCOL_VERSION) not in [v.strip() for v in offered.split(",")]:
        _fail(
            f"This plugin speaks plugin protocol version {APP_PROTOCOL_VERSION}, but the host "
            f"offered only {offered}."
        )


def _build_server(
    plugin: Plugin,
    lifecycle: _Lifecycle,
    stdio: queue.Queue[grpc_stdio_pb2.StdioData],
    socket_dir: str,
) -> tuple[grpc.Server, _DecisionSocket | None]:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="pm-plugin"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    checker = health.HealthServicer()
    checker.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    broker = PluginBroker()
    grpc_broker_pb2_grpc.add_GRPCBrokerServicer_to_server(broker, server)
    grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(lifecycle), server)
    grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(_Stdio(stdio), server)
    base_pb2_grpc.add_BaseServiceServicer_to_server(_Base(plugin, broker, lifecycle), server)
    extended = plugin.offer_extensions
    decision_socket = None
    if plugin.decider is not None:
        decider_pb2_grpc.add_DeciderServiceServicer_to_server(_Decider(plugin), server)
        if extended:
            streamed = _StreamDecider(plugin)
            extensions_pb2_grpc.add_StreamDeciderServiceServicer_to_server(streamed, server)
            decision_socket = _DecisionSocket(os.path.join(socket_dir, "decide.sock"), streamed)
    if extended:
        extensions_pb2_grpc.add_ExtensionServiceServicer_to_server(
            _Extensions(plugin, decision_socket.path if decision_socket else ""), server
        )
    if plugin.reporter is not None:
        reporter_pb2_grpc.add_ReporterServiceServicer_to_server(_Reporter(plugin), server)
        if extended:
            extensions_pb2_grpc.add_StreamReporterServiceServicer_to_server(
                _StreamReporter(plugin), server
            )
    if plugin.resolver is not None:
        resolver_pb2_grpc.add_ResolverServiceServicer_to_server(_Resolver(plugin), server)
    if plugin.hooks is not None and extended:
        extensions_pb2_grpc.add_HookServiceServicer_to_server(_Hooks(plugin.hooks), server)
    return server, decision_socket


def serve(plugin: Plugin) -> NoReturn:
    """Serve `plugin` to the host that started this process; never returns."""
    _check_environment()
    parent = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or None
    socket_dir = tempfile.mkdtemp(prefix="pm-plugin-", dir=parent)
    os.chmod(socket_dir, 0o700)
    socket_path = os.path.join(socket_dir, "plugin.sock")
    lifecycle = _Lifecycle()
    stdio: queue.Queue[grpc_stdio_pb2.StdioData] = queue.Queue(maxsize=STDIO_BUFFER)
    decision_socket: _DecisionSocket | None = None
    try:
        server, decision_socket = _build_server(plugin, lifecycle, stdio, socket_dir)
        server.add_insecure_port(f"unix:{socket_path}")
        server.start()

        real_stderr = sys.__stderr__ or sys.stderr
        handler = logging.StreamHandler(real_stderr)
        handler.setFormatter(_HclogJSON())
        logging.basicConfig(
            level=os.environ.get("PM_PLUGIN_LOG_LEVEL", "INFO").upper(),
            handlers=[handler],
            force=True,
        )

        sys.stdout.write(
            f"{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{socket_path}|grpc|\n"
        )
        sys.stdout.flush()
        sys.stdout = _StdioForwarder(grpc_stdio_pb2.StdioData.STDOUT, stdio)
        sys.stderr = _StdioForwarder(grpc_stdio_pb2.StdioData.STDERR, stdio)

        signal.signal(signal.SIGTERM, lambda *_: lifecycle.stop.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as go-plugin: the host decides
        while not lifecycle.stop.wait(0.5):
            pass
        server.stop(grace=0.5).wait(2.0)
    finally:
        if decision_socket is not None:
            decision_socket.close()
        shutil.rmtree(socket_dir, ignore_errors=True)
    logging.shutdown()
    os._exit(0)
