"""go-plugin's gRPC client for one plugin process, and the PR's lifecycle on top of it.

`PluginClient` is generic: any go-plugin gRPC plugin (Go included) can be connected, and
`channel` hands back the raw gRPC channel. The steps, in order:

1. `connect()`: dial the handshake's unix socket with a bounded message size, check health
   (service `plugin`), open `GRPCBroker/StartStream` and `GRPCStdio/StreamStdio` (whose
   output is drained into the host's log; Unimplemented is tolerated).
2. `configure()`: serve the host services on a new broker listener (id 1 for the first),
   announce it as ConnInfo on the broker stream, and call `BaseService/Configure` with its
   id. The plugin may call the host services while Configure is pending: they are already
   being served.
3. `describe()`: our `pmplugin.v1.ExtensionService`; Unimplemented means a PR-only plugin.
4. calls: the PR's unary decider/reporter/resolver, our streamed decider and hooks. Every
   failure (status, deadline, oversized or malformed reply) is a `PluginCallError`.
5. `close()`: BaseService/Shutdown, GRPCController/Shutdown, close the channel and the
   backchannel server. Ending the process is `PluginProcess.stop()`'s job.

The streamed transports it opens on demand (streamed decider, decision socket, streamed
reporter) are in host.streams.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from host.dns_answers import malformed_records
from host.errors import PluginCallError, PluginProcessError
from host.gate import GatedServer, serve_gated
from host.plugin_text import log_lines, loggable
from host.process import PluginProcess
from host.streams import DecisionSocket, StreamedDecider, StreamedReporter, _call_error, _why
from pm_plugin.wire.goplugin import (
    grpc_broker_pb2,
    grpc_broker_pb2_grpc,
    grpc_controller_pb2,
    grpc_controller_pb2_grpc,
    grpc_stdio_pb2_grpc,
)
from pm_plugin.wire.pmplugin.v1 import extensions_pb2, extensions_pb2_grpc
from pm_plugin.wire.portmaster import (
    base_pb2,
    base_pb2_grpc,
    decider_pb2,
    decider_pb2_grpc,
    network_pb2,
    plugins_pb2,
    reporter_pb2,
    reporter_pb2_grpc,
    resolver_pb2,
    resolver_pb2_grpc,
)

log = logging.getLogger("pm_plugins.client")

#: A reply larger than this is refused by gRPC and counted as the plugin's error.
MAX_MESSAGE = 4 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]
#: Longest stdio chunk written to the log.
MAX_STDIO_CHUNK = 4096

ServeBackchannel = Callable[[str, bool, str], grpc.Server]


@dataclass(frozen=True)
class Extensions:
    """What a plugin offers beyond the PR's services."""

    streamed_decider: bool = False
    hook_points: frozenset[str] = frozenset()
    streamed_reporter: bool = False
    decision_socket: str = ""


@dataclass(frozen=True)
class ConfigureArgs:
    """What Configure carries, as the PR's host fills it."""

    name: str
    types: tuple[int, ...]  # PluginType numbers, without the PR host's leading zeros
    privileged: bool = False
    static_config: bytes = b""
    disable_autostart: bool = False
    base_directory: str = ""
    host_version: str = ""


@dataclass
class _Broker:
    """The host's end of go-plugin's broker stream."""

    requests: queue.SimpleQueue[grpc_broker_pb2.ConnInfo | None] = field(
        default_factory=queue.SimpleQueue
    )
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    call: Any = None


class PluginClient:
    """A connected go-plugin gRPC plugin: broker, stdio, lifecycle and typed calls."""

    def __init__(self, process: PluginProcess) -> None:
        if process.handshake is None:
            raise RuntimeError("connect a plugin only after its handshake")
        self.process = process
        self.name = process.name
        self.channel: grpc.Channel = grpc.insecure_channel(
            f"unix:{process.handshake.address}", options=CHANNEL_OPTIONS
        )
        self.extensions = Extensions()
        self._broker = _Broker()
        self._threads: list[threading.Thread] = []
        self._backchannels: list[GatedServer] = []
        self._stream: StreamedDecider | None = None
        self._report_stream: StreamedReporter | None = None
        self._socket: DecisionSocket | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._decider = decider_pb2_grpc.DeciderServiceStub(self.channel)
        self._reporter = reporter_pb2_grpc.ReporterServiceStub(self.channel)
        self._resolver = resolver_pb2_grpc.ResolverServiceStub(self.channel)
        self._hooks = extensions_pb2_grpc.HookServiceStub(self.channel)
        self._base = base_pb2_grpc.BaseServiceStub(self.channel)

    # -- 1. connect -------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> None:
        """Wait for the channel, check health, open the broker and stdio streams.

        Raises:
            PluginProcessError: the plugin is not serving.
        """
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
            health = health_pb2_grpc.HealthStub(self.channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=timeout)
        except (grpc.FutureTimeoutError, grpc.RpcError) as err:
            raise PluginProcessError(
                self._gone(f"does not answer on its socket ({_why(err)})")
            ) from None
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise PluginProcessError(f"plugin {self.name} reports it is not serving")
        broker = grpc_broker_pb2_grpc.GRPCBrokerStub(self.channel)
        self._broker.call = broker.StartStream(iter(self._broker.requests.get, None))
        self._spawn(self._drain_broker)
        self._spawn(self._drain_stdio)

    def _gone(self, what: str) -> str:
        """One sentence: what the plugin did, and how its process ended if it did."""
        ended = self.process.exit_description() if self.process.exited.wait(0.2) else None
        return f"plugin {self.name} {what}" + (f" (its process: {ended})" if ended else "")

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"pm-plugins-{self.name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _drain_broker(self) -> None:
        try:
            for info in self._broker.call:  # the plugin announcing listeners of its own
                log.debug("plugin %s announced broker id %d", self.name, info.service_id)
        except grpc.RpcError:
            pass

    def _drain_stdio(self) -> None:
        stdio = grpc_stdio_pb2_grpc.GRPCStdioStub(self.channel)
        plugin_log = logging.getLogger(f"pm_plugins.plugin.{self.name}")
        try:
            for chunk in stdio.StreamStdio(empty_pb2.Empty()):
                text = chunk.data[:MAX_STDIO_CHUNK].decode("utf-8", errors="replace")
                channel = "stdout" if chunk.channel == 1 else "stderr"
                for line in log_lines(text):  # one record a line: no forged log lines
                    plugin_log.info("[%s] %s: %s", self.name, channel, line)
        except grpc.RpcError:
            pass  # Unimplemented by some plugins, or the plugin ended

    # -- 2. configure -----------------------------------------------------------------------

    def configure(
        self,
        args: ConfigureArgs,
        serve_backchannel: ServeBackchannel | None,
        timeout: float = 30.0,
    ) -> None:
        """Serve the host services on a broker connection, then call Configure with its id.

        Raises:
            PluginCallError: Configure failed (the plugin's on-init error included).
        """
        backchannel_id = 0
        if serve_backchannel is not None:
            assert self.process.socket_dir is not None
            backchannel_id = next(self._broker.ids)
            path = os.path.join(self.process.socket_dir, f"host-{backchannel_id}.sock")
            try:
                gated = serve_gated(
                    serve_backchannel, args.name, args.privileged, path,
                    allowed=self.process.owns, uid=self.process.uid,
                )  # fmt: skip
            except OSError as err:
                raise PluginProcessError(
                    f"cannot serve the host services to plugin {self.name}: {err}"
                ) from err
            self._backchannels.append(gated)
            self._broker.requests.put(
                grpc_broker_pb2.ConnInfo(service_id=backchannel_id, network="unix", address=path)
            )
        request = base_pb2.ConfigureRequest(
            base_directory=args.base_directory,
            config=plugins_pb2.PluginConfig(
                name=args.name,
                plugin_types=cast(Any, list(args.types)),
                privileged=args.privileged,
                static_config=args.static_config,
                disable_autostart=args.disable_autostart,
            ),
            backchannel_id=backchannel_id,
            portmaster_version=args.host_version,
        )
        try:
            self._base.Configure(request, timeout=timeout)
        except grpc.RpcError as err:
            if self.process.exited.wait(0.5):  # it died: say so, not how the stream ended
                raise PluginCallError(self._gone("died during Configure")) from None
            raise _call_error(self.name, "Configure", err) from err

    # -- 3. describe ------------------------------------------------------------------------

    def describe(self, timeout: float = 5.0) -> Extensions:
        """Ask for our extensions; a plugin without them is driven through the PR's calls."""
        stub = extensions_pb2_grpc.ExtensionServiceStub(self.channel)
        try:
            reply = stub.Describe(extensions_pb2.DescribeRequest(), timeout=timeout)
        except grpc.RpcError as err:
            if cast(grpc.Call, err).code() != grpc.StatusCode.UNIMPLEMENTED:
                raise _call_error(self.name, "Describe", err) from err
            self.extensions = Extensions()
        else:
            self.extensions = Extensions(
                reply.streamed_decider,
                frozenset(reply.hook_points),
                reply.streamed_reporter,
                self._checked_decision_socket(reply.decision_socket),
            )
        return self.extensions

    def _checked_decision_socket(self, path: str) -> str:
        """The announced decision socket if it lies in the directory we gave the plugin."""
        if not path:
            return ""
        home = self.process.socket_dir
        inside = home is not None and os.path.realpath(path).startswith(
            os.path.realpath(home) + os.sep
        )
        if not inside:
            log.warning(
                "plugin %s announced decision socket %s outside its directory; not using it",
                self.name,
                loggable(path, 256),
            )
            return ""
        return path

    # -- 4. calls ---------------------------------------------------------------------------

    def decide(self, connection: network_pb2.Connection, timeout: float) -> tuple[int, str]:
        """The PR's unary DecideOnConnection: (verdict number, reason)."""
        try:
            reply = self._decider.DecideOnConnection(
                decider_pb2.DecideOnConnectionRequest(connection=connection), timeout=timeout
            )
        except grpc.RpcError as err:
            raise _call_error(self.name, "DecideOnConnection", err) from err
        return int(reply.verdict), str(reply.reason)

    def decision_socket(self) -> DecisionSocket | None:
        """The streamed decider's socket transport, when the plugin offers it."""
        if self._socket is None and self.extensions.decision_socket:
            self._socket = DecisionSocket(
                self.extensions.decision_socket, self.name, self.process.owns
            )
        return self._socket

    def streamed_decider(self) -> StreamedDecider:
        """The open decision stream (opened on first use)."""
        if self._stream is None:
            self._stream = StreamedDecider(self.channel, self.name)
        return self._stream

    def streamed_reporter(self) -> StreamedReporter:
        """The report stream (opened on first use)."""
        if self._report_stream is None:
            self._report_stream = StreamedReporter(self.channel, self.name)
        return self._report_stream

    def report(self, connection: network_pb2.Connection, timeout: float) -> None:
        try:
            self._reporter.ReportConnection(
                reporter_pb2.ReportConnectionRequest(connection=connection), timeout=timeout
            )
        except grpc.RpcError as err:
            raise _call_error(self.name, "ReportConnection", err) from err

    def resolve(
        self,
        question: resolver_pb2.DNSQuestion,
        connection: network_pb2.Connection | None,
        timeout: float,
    ) -> resolver_pb2.DNSResponse | None:
        """The answer, or None when the plugin did not handle the question."""
        request = resolver_pb2.ResolveRequest(question=question)
        if connection is not None:
            request.connection.CopyFrom(connection)
        try:
            reply = self._resolver.Resolve(request, timeout=timeout)
        except grpc.RpcError as err:
            raise _call_error(self.name, "Resolve", err) from err
        if not reply.HasField("response"):
            return None
        response: resolver_pb2.DNSResponse = reply.response
        problem = malformed_records(response)
        if problem:
            raise PluginCallError(f"plugin {self.name}: Resolve reply was malformed: {problem}")
        return response

    def run_hook(
        self,
        hook_point: str,
        entity: extensions_pb2.Entity,
        data: extensions_pb2.Entity,
        timeout: float,
    ) -> extensions_pb2.Entity:
        try:
            reply = self._hooks.RunHook(
                extensions_pb2.HookRequest(hook_point=hook_point, entity=entity, data_entity=data),
                timeout=timeout,
            )
        except grpc.RpcError as err:
            raise _call_error(self.name, hook_point, err) from err
        result: extensions_pb2.Entity = reply.entity
        return result

    # -- 5. close ---------------------------------------------------------------------------

    def close(self, timeout: float = 2.0) -> None:
        """Ask the plugin to shut down (both ways go-plugin knows), then drop the channel.

        Safe to call twice; the second call does nothing.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._stream is not None:
            self._stream.close()
        if self._socket is not None:
            self._socket.close()
        if self._report_stream is not None:
            self._report_stream.close(timeout)
        if not self.process.exited.is_set():
            try:
                self._base.Shutdown(base_pb2.ShutdownRequest(), timeout=timeout)
            except grpc.RpcError as err:
                log.debug("plugin %s: BaseService.Shutdown: %s", self.name, err)
            controller = grpc_controller_pb2_grpc.GRPCControllerStub(self.channel)
            try:
                controller.Shutdown(grpc_controller_pb2.Empty(), timeout=timeout)
            except grpc.RpcError as err:
                log.debug("plugin %s: GRPCController.Shutdown: %s", self.name, err)
        self._broker.requests.put(None)
        self.channel.close()
        for server in self._backchannels:
            server.stop(grace=None)
        for thread in self._threads:
            thread.join(1.0)
