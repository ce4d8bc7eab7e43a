"""The gRPC servicers a plugin offers its host, and when the plugin stops.

The PR's BaseService (Configure, Shutdown) and its Decider, Reporter and Resolver types,
go-plugin's GRPCController, and our pmplugin.v1 extensions (streamed decider and
reporter, the decision socket, hooks, Describe). Each wraps the plugin; a failure in
plugin code is logged and returned to the host as an error. `_server` builds the gRPC
server from them; they are apart from it so that the serve() lifecycle reads on one page.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import NoReturn

import grpc
from google.protobuf.message import DecodeError

from pm_plugin._broker import PluginBroker
from pm_plugin._framework import PluginBase
from pm_plugin.framing import FrameError, read_frame, write_frame
from pm_plugin.hooks import HOOK_POINTS, HookError, NullPlugin, implemented_hooks, method_name
from pm_plugin.types import Decision, as_decision, wire_verdict
from pm_plugin.wire.goplugin import grpc_controller_pb2, grpc_controller_pb2_grpc
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

#: A framework plugin exits by itself this long after BaseService.Shutdown returns.
EXIT_AFTER_SHUTDOWN = 1.0

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
    def __init__(self, plugin: PluginBase, broker: PluginBroker, lifecycle: _Lifecycle) -> None:
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


class _Decider(decider_pb2_grpc.DeciderServiceServicer):
    def __init__(self, plugin: PluginBase) -> None:
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
    def __init__(self, plugin: PluginBase) -> None:
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
    def __init__(self, plugin: PluginBase) -> None:
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
    def __init__(self, plugin: PluginBase) -> None:
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
    def __init__(self, plugin: PluginBase) -> None:
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
    def __init__(self, plugin: PluginBase, decision_socket: str) -> None:
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
