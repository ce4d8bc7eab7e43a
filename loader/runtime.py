"""The plugin runtime of a host: start configured plugins, keep their state, dispatch to them.

`PluginHost` owns every plugin process of a host (no process-wide globals). For each
`PluginSpec` it runs the PR's lifecycle: start the process and read its handshake, connect,
serve the host services on the broker backchannel, Configure, ask for our extensions. Running
plugins join the chains in the order they were added (the order of plugins.json). A crash is
noticed by the process watcher at once; the plugin leaves the chains and keeps its reason.
`PluginHost` is also the plugin-manager backend a privileged plugin reaches.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

from loader.client import ConfigureArgs, PluginClient
from loader.dispatch import (
    Answer,
    ChainVerdict,
    Counters,
    DeciderChain,
    DecisionCache,
    HookPipeline,
    ReporterFanout,
    Resolution,
    ResolverChain,
)
from loader.errors import LoaderError, PluginCallError
from loader.host_services import HostServices
from loader.process import PluginProcess
from pm_plugin.types import TYPE_NAMES
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import network_pb2, plugins_pb2, resolver_pb2

log = logging.getLogger("pm_plugins.runtime")

HOST_VERSION = "0.1.0"


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


class PluginState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    CRASHED = "crashed"
    FAILED = "failed"


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

    # the chain members' interface (loader.dispatch)
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
            raise PluginCallError(f"plugin {self.name}: decider failed: {answer.error}")
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


class PluginHost:
    """Every plugin of one host: lifecycle, state, and the dispatch chains."""

    def __init__(
        self,
        services: HostServices | None = None,
        *,
        base_directory: str = "",
        host_version: str = HOST_VERSION,
        handshake_timeout: float = 10.0,
        stop_grace: float = 2.0,
    ) -> None:
        self.services = services if services is not None else HostServices()
        if self.services.plugin_manager is None:
            self.services.plugin_manager = self
        self.base_directory = base_directory
        self.host_version = host_version
        self.handshake_timeout = handshake_timeout
        self.stop_grace = stop_grace
        self.counters = Counters()
        self.cache = DecisionCache()
        self._plugins: dict[str, PluginInstance] = {}
        self._lock = threading.RLock()
        self._deciders = DeciderChain([], self.counters, self.cache)
        self._resolvers = ResolverChain([], self.counters)
        self._hooks = HookPipeline([], self.counters)
        self._reporters = ReporterFanout([], self.counters)

    # -- configuration and lifecycle ----------------------------------------------------------

    def add(self, spec: PluginSpec) -> PluginInstance:
        """Add a plugin (not started). Its place in the chains is the order of `add` calls."""
        with self._lock:
            if spec.name in self._plugins:
                raise ValueError(f"plugin {spec.name} is already configured")
            instance = PluginInstance(spec)
            self._plugins[spec.name] = instance
            return instance

    def plugins(self) -> list[PluginInstance]:
        with self._lock:
            return list(self._plugins.values())

    def get(self, name: str) -> PluginInstance:
        with self._lock:
            try:
                return self._plugins[name]
            except KeyError:
                raise LookupError(f"no plugin named {name!r} is configured") from None

    def start(self, name: str) -> PluginInstance:
        """Start one plugin; on failure it is FAILED with the reason, and LoaderError raised."""
        instance = self.get(name)
        with self._lock:
            if instance.state in (PluginState.RUNNING, PluginState.STARTING):
                return instance
            instance.state, instance.reason = PluginState.STARTING, ""
        spec = instance.spec
        process = PluginProcess(
            spec.name,
            spec.argv,
            handshake_timeout=self.handshake_timeout,
            pass_fds=spec.pass_fds,
            on_exit=lambda p, i=instance: self._on_exit(i, p),  # type: ignore[misc]
        )
        client: PluginClient | None = None
        try:
            process.start()
            client = PluginClient(process)
            instance.process, instance.client = process, client
            client.connect()
            client.configure(self._configure_args(spec), self.services.serve_backchannel)
            client.describe()
        except LoaderError as err:
            self._discard(instance, process, client)
            self._fail(instance, PluginState.FAILED, str(err))
            raise
        with self._lock:
            if process.exited.is_set():  # died during Configure
                self._discard(instance, process, client)
                self._fail(instance, PluginState.CRASHED, self._exit_reason(process))
                raise LoaderError(instance.reason)
            instance.state, instance.started_at = PluginState.RUNNING, time.time()
            self._rebuild()
        log.info("plugin %s started (pid %s)", name, process.pid)
        return instance

    def stop(self, name: str) -> None:
        """Stop one plugin gracefully; safe to call on a stopped one."""
        instance = self.get(name)
        with self._lock:
            was_running = instance.running
            instance.state = PluginState.STOPPED
            self._rebuild()
        self._discard(instance, instance.process, instance.client, graceful=was_running)

    def start_all(self) -> dict[str, str]:
        """Start every plugin not disabled; returns name -> reason for those that failed."""
        failed: dict[str, str] = {}
        for instance in self.plugins():
            if instance.spec.disable_autostart:
                continue
            try:
                self.start(instance.name)
            except LoaderError as err:
                failed[instance.name] = str(err)
        return failed

    def stop_all(self) -> None:
        """Stop every plugin, last added first. Safe to call twice."""
        for instance in reversed(self.plugins()):
            self.stop(instance.name)
        self._reporters.close()

    def _configure_args(self, spec: PluginSpec) -> ConfigureArgs:
        return ConfigureArgs(
            name=spec.name,
            types=tuple(int(TYPE_NAMES[t]) for t in spec.types if t in TYPE_NAMES),
            privileged=spec.privileged,
            static_config=spec.static_config,
            disable_autostart=spec.disable_autostart,
            base_directory=self.base_directory,
            host_version=self.host_version,
        )

    def _discard(
        self,
        instance: PluginInstance,
        process: PluginProcess | None,
        client: PluginClient | None,
        graceful: bool = False,
    ) -> None:
        if process is not None:
            process.expect_exit()
        if client is not None:
            if graceful:
                client.close()
            else:
                client.close(timeout=0.2)
        if process is not None:
            process.stop(grace=self.stop_grace)
        instance.client = None

    def _fail(self, instance: PluginInstance, state: PluginState, reason: str) -> None:
        with self._lock:
            instance.state, instance.reason = state, reason
            instance.errors.append((time.time(), reason))
            del instance.errors[:-20]
            self._rebuild()
        log.error("%s", reason)

    @staticmethod
    def _exit_reason(process: PluginProcess) -> str:
        tail = process.stderr_tail()[-3:]
        said = f"; last stderr lines: {' | '.join(tail)}" if tail else ""
        return f"plugin {process.name} {process.exit_description() or 'exited'}{said}"

    def _on_exit(self, instance: PluginInstance, process: PluginProcess) -> None:
        with self._lock:
            if instance.process is not process or instance.state is not PluginState.RUNNING:
                return
        self._fail(instance, PluginState.CRASHED, self._exit_reason(process))
        threading.Thread(
            target=self._discard, args=(instance, process, instance.client), daemon=True
        ).start()

    def _rebuild(self) -> None:
        """Swap in chains made of the running plugins, in configured order."""
        running = [i for i in self._plugins.values() if i.running]

        def having(kind: str) -> list[PluginInstance]:
            return [i for i in running if kind in i.spec.types]

        self._deciders = DeciderChain(having("decider"), self.counters, self.cache)
        self._resolvers = ResolverChain(having("resolver"), self.counters)
        self._hooks = HookPipeline(having("hook"), self.counters)
        old, self._reporters = self._reporters, ReporterFanout(having("reporter"), self.counters)
        threading.Thread(target=old.close, daemon=True).start()
        self.cache.clear()

    # -- dispatch -------------------------------------------------------------------------------

    def decide(self, connection: network_pb2.Connection) -> ChainVerdict:
        return self._deciders.decide(connection)

    def report(self, connection: network_pb2.Connection) -> None:
        self._reporters.report(connection)

    def resolve(
        self,
        question: resolver_pb2.DNSQuestion,
        connection: network_pb2.Connection | None = None,
    ) -> Resolution | None:
        return self._resolvers.resolve(question, connection)

    def run_hook(
        self,
        hook_point: str,
        entity: extensions_pb2.Entity,
        data: extensions_pb2.Entity | None = None,
    ) -> extensions_pb2.Entity:
        return self._hooks.run(hook_point, entity, data)

    # -- PluginManagerBackend -----------------------------------------------------------------

    def list_plugins(self) -> list[plugins_pb2.Plugin]:
        listed = []
        for instance in self.plugins():
            args = self._configure_args(instance.spec)
            errors = plugins_pb2.PluginErrorList(
                base_errors=[
                    plugins_pb2.PluginError(time=int(t * 1e9), error=e) for t, e in instance.errors
                ]
            )
            listed.append(
                plugins_pb2.Plugin(
                    config=plugins_pb2.PluginConfig(
                        name=args.name,
                        plugin_types=cast(Any, list(args.types)),
                        privileged=args.privileged,
                        static_config=args.static_config,
                        disable_autostart=args.disable_autostart,
                    ),
                    instance=plugins_pb2.PluginInstance(errors=errors),
                )
            )
        return listed

    def start_plugin(self, name: str) -> None:
        self._in_background(name, self.start)

    def stop_plugin(self, name: str) -> None:
        self._in_background(name, self.stop)

    def _in_background(self, name: str, action: Any) -> None:
        """Plugin-manager calls arrive on a plugin's backchannel: never block it on a start."""
        self.get(name)  # LookupError for an unknown name, answered at once
        threading.Thread(target=self._quietly, args=(action, name), daemon=True).start()

    @staticmethod
    def _quietly(action: Any, name: str) -> None:
        with contextlib.suppress(LoaderError):  # recorded in the plugin's state and reason
            action(name)
