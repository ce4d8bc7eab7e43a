"""`PluginUnderTest`: one plugin process driven with plain Python values from a test.

Why this exists: the issue of a plugin author is "does my plugin do what I meant", not the
wire. This is a small go-plugin host of its own (the SDK imports nothing of the real host):
it starts the plugin, serves it config, notifications and its decision cache over the
broker, configures it as a host does, and then calls its decider, reporter, resolver and
hooks with keyword arguments. A call the plugin fails with an exception raises
`PluginCrashed` carrying the plugin's own traceback from its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import empty_pb2

from pm_plugin.host import plain, to_value
from pm_plugin.testing._process import LogRecord, PluginProcess
from pm_plugin.testing._services import Config, DecisionCache, Notification, Notifications
from pm_plugin.types import TYPE_NAMES, Decision, Verdict, fqdn
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
    config_pb2_grpc,
    decider_pb2,
    decider_pb2_grpc,
    network_pb2,
    notification_pb2_grpc,
    plugins_pb2,
    reporter_pb2,
    reporter_pb2_grpc,
    resolver_pb2,
    resolver_pb2_grpc,
)

_T = TypeVar("_T")
_QTYPES = {"A": 1, "CNAME": 5, "PTR": 12, "TXT": 16, "AAAA": 28, "ANY": 255}
_PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}


def _drain(stream: Any) -> None:
    with contextlib.suppress(grpc.RpcError):
        for _ in stream:
            pass


class PluginCrashed(AssertionError):
    """A call failed inside the plugin; `traceback` is what the plugin logged about it."""

    def __init__(self, sentence: str, traceback: str = "") -> None:
        super().__init__(
            sentence + (f"\n\nthe plugin's traceback:\n{traceback}" if traceback else "")
        )
        self.traceback = traceback


class HookRefused(Exception):
    """A hook refused the entity (NetAuth's abort); the message is the plugin's."""


def connection(
    *,
    binary: str = "/usr/bin/curl",
    domain: str = "",
    ip: str = "",
    port: int = 443,
    protocol: str | int = "tcp",
    inbound: bool = False,
    id: str = "test-connection",
    **process: str,
) -> network_pb2.Connection:
    """A connection from plain values; `process` may name `name`, `profile`, `command_line`."""
    number = _PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    conn = network_pb2.Connection(id=id, inbound=inbound, ip_protocol=number)
    conn.process.binary_path = binary
    for key, value in process.items():
        setattr(conn.process, key, value)
    conn.entity.domain = fqdn(domain) if domain else ""
    conn.entity.ip, conn.entity.port, conn.entity.protocol = ip, port, number
    return conn


class PluginUnderTest:
    """A plugin started as its own process under a small test host; use it with `with`."""

    def __init__(
        self,
        executable: str | os.PathLike[str] | Sequence[str],
        *,
        name: str = "plugin",
        types: Sequence[str] = (),
        static_config: Any = None,
        start_timeout: float = 10.0,
        call_timeout: float = 5.0,
    ) -> None:
        argv = (
            [os.fspath(executable)]
            if isinstance(executable, str | os.PathLike)
            else list(executable)
        )
        self.name = name
        self.types = tuple(types)
        self._static = b"" if static_config is None else json.dumps(static_config).encode()
        self._work = Path(tempfile.mkdtemp(prefix="pm-plugin-test-"))
        self.data_dir = self._work / "data"
        self.data_dir.mkdir()
        self._process = PluginProcess(argv, str(self._work), dict(os.environ))
        self._start_timeout, self._timeout = start_timeout, call_timeout
        self.config = Config(name)
        self.notifications = Notifications()
        self.cache = DecisionCache()
        self.output: list[str] = []
        self._notifications_taken = 0
        self._broker: queue.SimpleQueue[grpc_broker_pb2.ConnInfo | None] = queue.SimpleQueue()
        self._server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> PluginUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> PluginUnderTest:
        """Start the process, read its handshake, serve the host services, Configure it."""
        try:
            address = self._process.start(self._start_timeout)
            self._channel = grpc.insecure_channel(f"unix:{address}")
            grpc.channel_ready_future(self._channel).result(timeout=self._start_timeout)
            self._serve_host_services()
            broker = grpc_broker_pb2_grpc.GRPCBrokerStub(self._channel)
            stream = broker.StartStream(iter(self._broker.get, None))
            threading.Thread(target=_drain, args=(stream,), daemon=True).start()
            threading.Thread(target=self._read_stdio, daemon=True).start()
            self._broker.put(grpc_broker_pb2.ConnInfo(
                service_id=1, network="unix", address=str(self._work / "host.sock")))  # fmt: skip
            request = base_pb2.ConfigureRequest(
                base_directory=str(self.data_dir),
                config=plugins_pb2.PluginConfig(
                    name=self.name, static_config=self._static,
                    plugin_types=cast(Any, [TYPE_NAMES[t] for t in self.types if t in TYPE_NAMES]),
                ),
                backchannel_id=1,
                portmaster_version="pm_plugin.testing",
            )  # fmt: skip
            self._call("Configure", lambda: base_pb2_grpc.BaseServiceStub(self._chan()).Configure(
                request, timeout=self._start_timeout))  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def _serve_host_services(self) -> None:
        server = grpc.server(ThreadPoolExecutor(max_workers=16))
        config_pb2_grpc.add_ConfigServiceServicer_to_server(self.config, server)
        notification_pb2_grpc.add_NotificationServiceServicer_to_server(self.notifications, server)
        extensions_pb2_grpc.add_DecisionCacheServiceServicer_to_server(self.cache, server)
        server.add_insecure_port(f"unix:{self._work / 'host.sock'}")
        server.start()
        self._server = server

    def _read_stdio(self) -> None:
        stub = grpc_stdio_pb2_grpc.GRPCStdioStub(self._chan())
        try:
            for chunk in stub.StreamStdio(empty_pb2.Empty()):
                self.output.append(chunk.data.decode(errors="replace"))
        except grpc.RpcError:
            pass

    def stop(self) -> None:
        """Shut the plugin down as a host does, then end its process; idempotent."""
        self.config.close()
        self.notifications.close()
        if self._channel is not None and self._process.exit_code() is None:
            base = base_pb2_grpc.BaseServiceStub(self._chan())
            controller = grpc_controller_pb2_grpc.GRPCControllerStub(self._chan())
            with contextlib.suppress(grpc.RpcError):
                base.Shutdown(base_pb2.ShutdownRequest(), timeout=2)
            with contextlib.suppress(grpc.RpcError):
                controller.Shutdown(grpc_controller_pb2.Empty(), timeout=2)
        self._process.stop()
        self._broker.put(None)
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._server is not None:
            self._server.stop(0)
            self._server = None
        shutil.rmtree(self._work, ignore_errors=True)

    def _chan(self) -> grpc.Channel:
        if self._channel is None:
            raise RuntimeError(f"plugin {self.name} is not started")
        return self._channel

    # -- calls --------------------------------------------------------------------------------

    def decide(self, conn: network_pb2.Connection | None = None, **fields: Any) -> Decision:
        """The plugin's verdict on `conn`, or on `connection(**fields)`."""
        request = decider_pb2.DecideOnConnectionRequest(connection=conn or connection(**fields))
        stub = decider_pb2_grpc.DeciderServiceStub(self._chan())
        reply = self._call(
            "decide", lambda: stub.DecideOnConnection(request, timeout=self._timeout)
        )
        return Decision(Verdict(reply.verdict), reply.reason)

    def report(self, conn: network_pb2.Connection | None = None, **fields: Any) -> None:
        """Report a connection with its final verdict (`verdict=Verdict.BLOCK` in `fields`)."""
        verdict = fields.pop("verdict", Verdict.ACCEPT)
        conn = conn or connection(**fields)
        conn.verdict = cast(Any, int(verdict))
        stub = reporter_pb2_grpc.ReporterServiceStub(self._chan())
        request = reporter_pb2.ReportConnectionRequest(connection=conn)
        self._call("report", lambda: stub.ReportConnection(request, timeout=self._timeout))

    def resolve(self, name: str, qtype: str = "A") -> resolver_pb2.DNSResponse | None:
        """The plugin's answer to a DNS question, or None when it does not handle it."""
        question = resolver_pb2.DNSQuestion(name=fqdn(name), type=_QTYPES[qtype.upper()])
        setattr(question, "class", 1)
        stub = resolver_pb2_grpc.ResolverServiceStub(self._chan())
        request = resolver_pb2.ResolveRequest(question=question, connection=connection())
        reply = self._call("resolve", lambda: stub.Resolve(request, timeout=self._timeout))
        return reply.response if reply.HasField("response") else None

    def run_hook(self, hook_point: str, entity: str, *meta: str) -> extensions_pb2.Entity:
        """Run hook `hook_point` on entity id `entity` with untyped meta ("key:value");
        returns the entity as the plugin left it. HookRefused when the hook aborts."""
        request = extensions_pb2.HookRequest(hook_point=hook_point)
        request.entity.id = entity
        request.entity.meta.untyped_meta.extend(meta)
        stub = extensions_pb2_grpc.HookServiceStub(self._chan())
        try:
            reply = stub.RunHook(request, timeout=self._timeout)
        except grpc.RpcError as err:
            if cast(grpc.Call, err).code() == grpc.StatusCode.ABORTED:
                raise HookRefused(cast(grpc.Call, err).details()) from None
            raise self._crashed(f"hook {hook_point}", err, len(self._process.records)) from None
        result: extensions_pb2.Entity = reply.entity
        return result

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        seen = len(self._process.records)
        try:
            return call()
        except grpc.RpcError as err:
            raise self._crashed(what, err, seen) from None

    def _crashed(self, what: str, err: grpc.RpcError, seen: int) -> PluginCrashed:
        code = self._process.exit_code(wait=0.3)
        if code is not None:
            tail = "\n".join(r.message for r in self._process.records[-20:])
            return PluginCrashed(f"plugin {self.name} exited with code {code} during {what}", tail)
        details = cast(grpc.Call, err).details() or cast(grpc.Call, err).code().name
        deadline = time.monotonic() + 1.0
        with self._process.changed:
            while True:
                found = [
                    r.message for r in self._process.records[seen:] if "Traceback" in r.message
                ]
                if found or not self._process.changed.wait(deadline - time.monotonic()):
                    break
        return PluginCrashed(f"{what} failed in plugin {self.name}: {details}", "\n".join(found))

    # -- config and notifications ---------------------------------------------------------------

    def wait_for_option(self, key: str, timeout: float = 5.0) -> None:
        """Block until the plugin registered option `key` (it may do so after Configure)."""
        full = self.config.full(key)
        with self.config.registered:
            if not self.config.registered.wait_for(lambda: full in self.config.options, timeout):
                raise AssertionError(
                    f"plugin {self.name} registered no option {key} in {timeout:g} s"
                )

    def wait_for_watch(self, key: str, timeout: float = 5.0) -> None:
        """Block until the plugin watches option `key` (a watch starts in the background, and
        a change made before it is in place reaches only a later read)."""
        full = self.config.full(key)
        deadline = time.monotonic() + timeout
        while full not in self.config.watched():
            if time.monotonic() > deadline:
                raise AssertionError(f"plugin {self.name} does not watch {key} after {timeout:g} s")
            time.sleep(0.01)

    def option(self, key: str) -> Any:
        """The current value of option `key` (relative, as the plugin named it) as plain Python."""
        return plain(self.config.value(self.config.full(key)))

    def set_option(self, key: str, value: str | int | bool | Sequence[str] | None) -> int:
        """Set option `key` (None: back to its default) as a person would in the host; returns
        how many of the plugin's watches were sent the change."""
        return self.config.set(self.config.full(key), None if value is None else to_value(value))

    def watched(self) -> list[str]:
        """The full keys the plugin currently watches."""
        return self.config.watched()

    def next_notification(self, timeout: float = 5.0) -> Notification:
        """The plugin's next notification this method has not returned yet (one shown
        before the call included), waiting up to `timeout` for it."""
        count = self._notifications_taken + 1
        if not self.notifications.wait(count, timeout):
            raise AssertionError(f"plugin {self.name} showed no notification in {timeout:g} s")
        self._notifications_taken = count
        return self.notifications.shown[count - 1]

    def answer(self, notification: Notification | str, action: str) -> None:
        """Answer a notification with one of its actions: the plugin's notify() returns it."""
        event_id = notification if isinstance(notification, str) else notification.event_id
        self.notifications.answer(event_id, action)

    # -- what it said ------------------------------------------------------------------------------

    @property
    def logs(self) -> list[LogRecord]:
        """Every record the plugin logged so far."""
        with self._process.changed:
            return list(self._process.records)

    def printed(self, text: str, timeout: float = 2.0) -> bool:
        """Whether the plugin's print() output contains `text` within `timeout`."""
        deadline = time.monotonic() + timeout
        while text not in "".join(self.output):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def logged(self, text: str, timeout: float = 2.0) -> bool:
        """Whether a log message containing `text` arrives within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._process.changed:
            while not any(text in r.message for r in self._process.records):
                left = deadline - time.monotonic()
                if left <= 0 or not self._process.changed.wait(left):
                    return any(text in r.message for r in self._process.records)
        return True
