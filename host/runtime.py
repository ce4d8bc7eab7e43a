"""The plugin runtime of a host: start configured plugins, keep their state, dispatch to them.

`PluginHost` owns every plugin process of a host (no process-wide globals). For each
`PluginSpec` it runs the PR's lifecycle: start the process and read its handshake, connect,
serve the host services on the broker backchannel, Configure, ask for our extensions. Running
plugins join the chains in the order they were added (the order of plugins.json). A crash is
noticed by the process watcher at once; the plugin leaves the chains and keeps its reason.
It is then supervised (`host.supervise.RestartPolicy`): started again with the same spec after
an exponential backoff, until it crashes too often within a window and is FAILED. A listener
(`on_state`) hears every state change, so the module manager can follow plugins it did not
start or stop itself. `PluginHost` is also the plugin-manager backend a privileged plugin reaches.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

from host.client import ConfigureArgs, PluginClient
from host.dispatch import (
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
from host.errors import PluginCallError
from host.host_services import HostServices
from host.process import PluginProcess
from host.supervise import DEFAULT_RESTART_POLICY, CrashHistory, RestartPolicy
from loader.errors import LoaderError
from loader.host_modules import HOST_VERSION
from pm_plugin.types import TYPE_NAMES
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import network_pb2, plugins_pb2, resolver_pb2

log = logging.getLogger("pm_plugins.runtime")


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


#: `on_state(name, state, reason)`: told about every change of a plugin's state or reason.
StateListener: TypeAlias = Callable[[str, PluginState, str], None]


@dataclass
class _Supervision:
    """One crash episode of a plugin: the thread that reaps, waits and restarts, and the event
    that ends its wait early when stop() or a manual start() overtakes it."""

    thread: threading.Thread
    cancelled: threading.Event


class _Superseded(Exception):
    """A stop() or manual start() came while a start was under way; its process is gone."""


class _LaunchFailed(LoaderError):
    """A start failed: `error` is what to raise to a caller, `crashed` whether the process died
    during Configure (rather than refusing the handshake or a call), `stderr` its last lines."""

    def __init__(self, error: LoaderError, *, crashed: bool, stderr: list[str]) -> None:
        super().__init__(str(error))
        self.error, self.crashed, self.stderr = error, crashed, stderr


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
    """Every plugin of one host: lifecycle, supervision, state, and the dispatch chains."""

    def __init__(
        self,
        services: HostServices | None = None,
        *,
        base_directory: str = "",
        host_version: str = HOST_VERSION,
        handshake_timeout: float = 10.0,
        stop_grace: float = 2.0,
        restart: RestartPolicy | None = DEFAULT_RESTART_POLICY,
        on_state: StateListener | None = None,
    ) -> None:
        """`restart=None` turns supervision off: a crashed plugin stays CRASHED.

        `on_state(name, state, reason)` is called on a thread of its own, in the order the
        changes happened, never under the host's lock: a listener may call back into the host
        (start, stop, get) and cannot stall a crash being handled. Its exceptions are logged.
        """
        self.services = services if services is not None else HostServices()
        if self.services.plugin_manager is None:
            self.services.plugin_manager = self
        self.base_directory = base_directory
        self.host_version = host_version
        self.handshake_timeout = handshake_timeout
        self.stop_grace = stop_grace
        self.restart = restart
        self.on_state = on_state
        self.counters = Counters()
        self.cache = DecisionCache()
        self._plugins: dict[str, PluginInstance] = {}
        self._lock = threading.RLock()
        self._deciders = DeciderChain([], self.counters, self.cache)
        self._resolvers = ResolverChain([], self.counters)
        self._hooks = HookPipeline([], self.counters)
        self._reporters = ReporterFanout([], self.counters)
        self._events: collections.deque[tuple[str, PluginState, str]] = collections.deque()
        self._announcing = False

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
        """Start one plugin; on failure it is FAILED with the reason, and LoaderError raised.

        A plugin waiting for a restart is started at once (the pending restart is dropped, its
        crash count kept); any other start, a FAILED plugin's above all, forgets its crashes,
        so whoever starts it by hand gives it a fresh allowance.
        """
        instance = self.get(name)
        with self._lock:
            if instance.state in (PluginState.RUNNING, PluginState.STARTING):
                return instance
            if instance.state is not PluginState.CRASHED and instance._crashes is not None:
                instance._crashes.clear()
            epoch = self._supersede(instance)
            self._set(instance, PluginState.STARTING, "")
        try:
            self._launch(instance, epoch, restart=False)
        except _Superseded:
            raise LoaderError(f"plugin {name} was stopped before it finished starting") from None
        except _LaunchFailed as failed:
            with self._lock:
                if instance._epoch != epoch:
                    raise LoaderError(
                        f"plugin {name} was stopped before it finished starting"
                    ) from None
                state = PluginState.CRASHED if failed.crashed else PluginState.FAILED
                self._set(instance, state, str(failed))
                self._record_error(instance, str(failed))
            log.error("%s", failed)
            raise failed.error from None
        log.info("plugin %s started (pid %s)", name, instance.pid)
        return instance

    def stop(self, name: str) -> None:
        """Stop one plugin gracefully; safe to call on a stopped one.

        A pending restart is cancelled, and one under way is waited for (it sees the stop and
        ends its new process), so when stop() returns no process of this plugin is left and
        none will be started.
        """
        instance = self.get(name)
        with self._lock:
            was_running = instance.running
            self._supersede(instance)
            if instance._crashes is not None:
                instance._crashes.clear()
            self._set(instance, PluginState.STOPPED, instance.reason)
            self._rebuild()
            process, client = instance.process, instance.client
            supervisors, attempt = list(instance._supervisors), instance._attempt
        if attempt is not None:
            self._end_attempt(attempt)
        self._discard(instance, process, client, graceful=was_running)
        bound = self.handshake_timeout + 2 * self.stop_grace + 30.0  # a start's worst case
        for supervision in supervisors:
            if supervision.thread is threading.current_thread():  # stop() from on_state
                continue
            supervision.thread.join(bound)
            if supervision.thread.is_alive():
                log.error("plugin %s: its restart did not end within %g s", name, bound)
        with self._lock:
            instance._supervisors = [s for s in instance._supervisors if s.thread.is_alive()]

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

    def _launch(self, instance: PluginInstance, epoch: int, *, restart: bool) -> None:
        """Start the process, handshake, connect, Configure, describe; RUNNING on success.

        The spec is used as it is on every start, a restart's too: its argv and pass_fds
        stay valid for the host's lifetime (the boot loader keeps its sealed memfd open).

        Raises:
            _LaunchFailed: the start failed; the process is stopped, the state left to the
                caller (a manual start reports it, a restart counts it as a crash).
            _Superseded: stop() or another start() came meanwhile; the process is stopped.
        """
        spec = instance.spec
        process = PluginProcess(
            spec.name,
            spec.argv,
            handshake_timeout=self.handshake_timeout,
            pass_fds=spec.pass_fds,
            on_exit=lambda p, i=instance: self._on_exit(i, p),  # type: ignore[misc]
        )
        client: PluginClient | None = None
        with self._lock:
            instance._attempt = process
        try:
            process.start()
            client = PluginClient(process)
            with self._lock:
                if instance._attempt is process:
                    instance._attempt = None
                if instance._epoch != epoch:
                    raise _Superseded
                instance.process, instance.client = process, client
            client.connect()
            client.configure(self._configure_args(spec), self.services.serve_backchannel)
            client.describe()
        except _Superseded:
            self._discard(instance, process, client)
            raise
        except Exception as err:
            with self._lock:
                if instance._attempt is process:
                    instance._attempt = None
            self._discard(instance, process, client)
            if self._overtaken(instance, epoch):
                raise _Superseded from err
            if not isinstance(err, LoaderError):  # a bug, not the plugin: keep the state sane
                log.exception("plugin %s: unexpected error while starting", spec.name)
                err = LoaderError(f"plugin {spec.name} failed to start: {err!r}")
            raise _LaunchFailed(err, crashed=False, stderr=process.stderr_tail()[-3:]) from err
        with self._lock:
            overtaken, died = instance._epoch != epoch, process.exited.is_set()
            if not overtaken and not died:
                self._set(instance, PluginState.RUNNING, "")
                instance.started_at = time.time()
                if restart:
                    instance.restarts += 1
                self._rebuild()
        if overtaken or died:
            self._discard(instance, process, client)
            if overtaken:
                raise _Superseded
            reason = self._exit_reason(process)  # died during Configure
            raise _LaunchFailed(
                LoaderError(reason), crashed=True, stderr=process.stderr_tail()[-3:]
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
        with self._lock:
            if instance.client is client:  # not the client of a start that came after
                instance.client = None

    @staticmethod
    def _end_attempt(process: PluginProcess) -> None:
        """End a process that may still be waiting for its handshake, so the start under way
        fails at once instead of after `handshake_timeout`. Its own start() then reaps it and
        removes its directory. Before it was spawned there is nothing to signal: that start
        notices the stop when it claims the plugin, after its handshake."""
        process.expect_exit()
        pid = process.pid
        if pid is not None and not process.exited.is_set():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # the plugin leads its own process group

    def _supersede(self, instance: PluginInstance) -> int:
        """Overtake every start and restart under way or pending; the caller holds the lock."""
        instance._epoch += 1
        for supervision in instance._supervisors:
            supervision.cancelled.set()
        return instance._epoch

    def _overtaken(self, instance: PluginInstance, epoch: int) -> bool:
        with self._lock:
            return instance._epoch != epoch

    @staticmethod
    def _record_error(instance: PluginInstance, reason: str) -> None:
        """Keep the reason in the plugin's error list (the PR's `PluginErrorList`)."""
        instance.errors.append((time.time(), reason))
        del instance.errors[:-20]

    @staticmethod
    def _exit_reason(process: PluginProcess) -> str:
        tail = process.stderr_tail()[-3:]
        said = f"; last stderr lines: {' | '.join(tail)}" if tail else ""
        return f"plugin {process.name} {process.exit_description() or 'exited'}{said}"

    def _on_exit(self, instance: PluginInstance, process: PluginProcess) -> None:
        """The process exited without being asked to. Runs on its exit watcher thread, so it
        only takes the plugin out of the chains and hands the rest to a supervision thread."""
        crashed_at = time.monotonic()
        with self._lock:
            if instance.process is not process or instance.state is not PluginState.RUNNING:
                return
            # CRASHED at once for everyone who looks; announced once the supervisor has
            # reaped the process (its last stderr lines are in then) and made its plan
            instance.state, instance.reason = PluginState.CRASHED, self._exit_reason(process)
            self._rebuild()
            cancelled = threading.Event()
            thread = threading.Thread(
                target=self._supervise,
                args=(instance, process, instance.client, instance._epoch, crashed_at, cancelled),
                name=f"pm-plugins-supervise-{instance.name}",
                daemon=True,
            )
            instance._supervisors = [s for s in instance._supervisors if s.thread.is_alive()]
            instance._supervisors.append(_Supervision(thread, cancelled))
            thread.start()

    def _supervise(
        self,
        instance: PluginInstance,
        process: PluginProcess,
        client: PluginClient | None,
        epoch: int,
        crashed_at: float,
        cancelled: threading.Event,
    ) -> None:
        """One crash episode: reap the process, then wait and restart until the plugin runs,
        gives up, or a stop()/start() overtakes it (`epoch` changes, `cancelled` is set)."""
        self._discard(instance, process, client)
        reason, stderr = self._exit_reason(process), process.stderr_tail()[-3:]
        while True:
            with self._lock:
                if instance._epoch != epoch:
                    return
                delay = self._after_crash(instance, reason, stderr, crashed_at)
            if delay is None or cancelled.wait(delay):
                return
            with self._lock:
                if instance._epoch != epoch:
                    return
                self._set(instance, PluginState.STARTING, "")
            try:
                self._launch(instance, epoch, restart=True)
            except _Superseded:
                return
            except _LaunchFailed as failed:  # a restart that fails is one more crash
                reason, stderr, crashed_at = str(failed), failed.stderr, time.monotonic()
                continue
            log.info("plugin %s restarted (pid %s)", instance.name, instance.pid)
            return

    def _after_crash(
        self, instance: PluginInstance, reason: str, stderr: list[str], crashed_at: float
    ) -> float | None:
        """Count the crash and decide: seconds until the restart, or None (no restart).

        The caller holds the lock. The state becomes CRASHED with the plan in its reason, or
        FAILED when the policy gives up.
        """
        self._record_error(instance, reason)
        policy = self.restart
        if policy is None:
            self._set(instance, PluginState.CRASHED, reason)
            log.error("%s", reason)
            return None
        if instance._crashes is None or instance._crashes.policy is not policy:
            instance._crashes = CrashHistory(policy)
        crashes = instance._crashes.record(crashed_at)
        delay = policy.delay_after(crashes)
        if delay is None:
            said = (
                f"; last stderr lines: {' | '.join(stderr)}"
                if stderr
                else "; it wrote nothing on stderr"
            )
            self._set(
                instance,
                PluginState.FAILED,
                f"plugin {instance.name} crashed {crashes} times in {policy.window:g} s; "
                f"giving up{said}",
            )
            log.error("%s", instance.reason)
            return None
        self._set(
            instance,
            PluginState.CRASHED,
            f"{reason}; restarting in {delay:g} s "
            f"(crash {crashes} of {policy.max_crashes} in {policy.window:g} s)",
        )
        log.warning("%s", instance.reason)
        return delay

    # -- state listener -------------------------------------------------------------------------

    def _set(self, instance: PluginInstance, state: PluginState, reason: str) -> None:
        """Change a plugin's state and queue the change for `on_state`; the caller holds the
        lock. Compared with what was last announced, not with the current state: a crash is
        set by the exit watcher at once but announced by its supervisor, with its plan."""
        instance.state, instance.reason = state, reason
        if instance._announced == (state, reason):
            return
        instance._announced = (state, reason)
        if self.on_state is None:
            return
        self._events.append((instance.name, state, reason))
        if not self._announcing:
            self._announcing = True
            threading.Thread(target=self._announce, name="pm-plugins-on-state", daemon=True).start()

    def _announce(self) -> None:
        """Deliver queued state changes in order, on this thread, outside the lock. One such
        thread at a time; it ends when the queue is empty, so an idle host keeps none."""
        while True:
            with self._lock:
                if not self._events:
                    self._announcing = False
                    return
                name, state, reason = self._events.popleft()
            listener = self.on_state
            if listener is None:
                continue
            try:
                listener(name, state, reason)
            except Exception:
                log.exception("state listener failed on plugin %s -> %s", name, state.value)

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
