"""A configured plugin as the host keeps it: its spec, its state, and its running client.

Why this exists: `PluginSpec`, `PluginState` and `PluginInstance` are the per-plugin records
`PluginHost` (host.runtime) holds and its lifecycle (host.lifecycle) updates; a
`PluginInstance` is also the member the dispatch chains (host.dispatch) call, through the best
transport the plugin offers. They live apart from the host so that both halves share one
definition without importing each other.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from host.client import PluginClient
from host.dispatch import Answer
from host.errors import PluginCallError
from host.plugin_text import loggable
from host.process import PluginProcess
from host.supervise import CrashHistory
from loader.capabilities import Capabilities
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import network_pb2, resolver_pb2

__all__ = ["PluginInstance", "PluginSpec", "PluginState", "StateListener"]


@dataclass(frozen=True)
class PluginSpec:
    """One plugin as the host runs it: what to execute and what Configure tells it."""

    name: str
    argv: tuple[str, ...]
    types: tuple[str, ...]
    privileged: bool = False
    static_config: bytes = b""  # the raw JSON of its plugins.json "config"
    disable_autostart: bool = False
    version: str = ""
    pass_fds: tuple[int, ...] = ()
    capabilities: Capabilities = field(default_factory=Capabilities)
    shown_as: str = ""  # its executable's file, named in its messages instead of a sealed copy's


class PluginState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    CRASHED = "crashed"
    FAILED = "failed"


#: `on_state(name, state, reason)`: told about every change of a plugin's state or reason.
StateListener: TypeAlias = Callable[[str, PluginState, str], None]


@dataclass
class _Supervision:
    """One crash episode of a plugin: the thread that reaps, waits and restarts, and the event
    that ends its wait early when stop() or a manual start() overtakes it."""

    thread: threading.Thread
    cancelled: threading.Event


@dataclass
class PluginInstance:
    """A configured plugin and, while it runs, its process and client."""

    spec: PluginSpec
    state: PluginState = PluginState.STOPPED
    reason: str = ""
    process: PluginProcess | None = None
    client: PluginClient | None = None
    started_at: float = 0.0
    errors: list[tuple[float, str]] = field(default_factory=list)
    #: How many times the host restarted it after a crash (successful restarts only).
    restarts: int = 0
    # supervision bookkeeping, owned by PluginHost and guarded by its lock:
    # `_epoch` grows on every stop() and manual start(), so a restart scheduled before one of
    # them can tell it was overtaken and must not fire.
    _epoch: int = field(default=0, init=False, repr=False)
    _crashes: CrashHistory | None = field(default=None, init=False, repr=False)
    _supervisors: list[_Supervision] = field(default_factory=list, init=False, repr=False)
    _announced: tuple[PluginState, str] = field(
        default=(PluginState.STOPPED, ""), init=False, repr=False
    )
    # a process still in its handshake (not yet `process`): stop() ends it instead of waiting
    _attempt: PluginProcess | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.running else None

    @property
    def running(self) -> bool:
        return self.state is PluginState.RUNNING

    def _client(self) -> PluginClient:
        client = self.client
        if client is None or not self.running:
            raise PluginCallError(f"plugin {self.name} is not running ({self.state.value})")
        return client

    # the chain members' interface (host.dispatch)
    def decide(self, connection: network_pb2.Connection, timeout: float) -> Answer:
        """Through the best transport the plugin offers: its decision socket, our gRPC
        decision stream, or the PR's unary call."""
        client = self._client()
        fast = client.decision_socket()
        if fast is not None:
            answer = fast.decide(connection, timeout)
        elif client.extensions.streamed_decider:
            (future,) = client.streamed_decider().submit(connection)
            try:
                answer = future.result(timeout)
            except TimeoutError as err:
                future.cancel()
                raise PluginCallError(f"plugin {self.name}: decision timed out") from err
        else:
            verdict, reason = client.decide(connection, timeout)
            return Answer(verdict, reason)
        if answer.error:
            raise PluginCallError(
                f"plugin {self.name}: decider failed: {loggable(answer.error, 512)}"
            )
        return Answer(answer.verdict, answer.reason, answer.cache_ttl)

    def report(self, connections: list[network_pb2.Connection], timeout: float) -> None:
        client = self._client()
        if client.extensions.streamed_reporter:
            client.streamed_reporter().send(connections)
            return
        for connection in connections:  # the PR's unary call, one per connection
            client.report(connection, timeout)

    def resolve(
        self,
        question: resolver_pb2.DNSQuestion,
        connection: network_pb2.Connection | None,
        timeout: float,
    ) -> resolver_pb2.DNSResponse | None:
        return self._client().resolve(question, connection, timeout)

    def implements(self, hook_point: str) -> bool:
        client = self.client
        return client is not None and hook_point in client.extensions.hook_points

    def run_hook(
        self,
        hook_point: str,
        entity: extensions_pb2.Entity,
        data: extensions_pb2.Entity,
        timeout: float,
    ) -> extensions_pb2.Entity:
        return self._client().run_hook(hook_point, entity, data, timeout)
