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

import logging
import os
import queue
import shutil
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pm_plugin._broker import MAX_MESSAGE, PluginBroker
from pm_plugin._framework import PluginBase
from pm_plugin._servicers import (
    _Base,
    _Controller,
    _Decider,
    _DecisionSocket,
    _Extensions,
    _Hooks,
    _Lifecycle,
    _Reporter,
    _Resolver,
    _StreamDecider,
    _StreamReporter,
)
from pm_plugin._stdio import STDIO_BUFFER, _HclogJSON, _Stdio, _StdioForwarder
from pm_plugin.wire.goplugin import (
    grpc_broker_pb2_grpc,
    grpc_controller_pb2_grpc,
    grpc_stdio_pb2,
    grpc_stdio_pb2_grpc,
)
from pm_plugin.wire.pmplugin.v1 import extensions_pb2_grpc
from pm_plugin.wire.portmaster import (
    base_pb2_grpc,
    decider_pb2_grpc,
    reporter_pb2_grpc,
    resolver_pb2_grpc,
)

COOKIE_KEY, COOKIE_VALUE = "PORTMASTER_PLUGIN", "hello"
CORE_PROTOCOL_VERSION, APP_PROTOCOL_VERSION = 1, 1


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
    plugin: PluginBase,
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


def serve(plugin: PluginBase) -> NoReturn:
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
