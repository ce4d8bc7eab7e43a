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

It owns the decision cache (host.decision_cache) and decides when answers die: a plugin's own
when it joins or leaves the decider chain (start, stop, crash, restart) or asks through
`pmplugin.v1.DecisionCacheService`; everyone's when any config value changes.

The per-plugin records are in host.instance, the launch and crash-restart machinery in
host.lifecycle (`PluginLifecycle`, a mixin of `PluginHost`); `PluginSpec`, `PluginState` and
`PluginInstance` are re-exported here.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import threading
from typing import Any, cast

from host.decision_cache import DEFAULT_CACHE_MAX_TTL, DecisionCache
from host.dispatch import (
    ChainVerdict,
    Counters,
    DeciderChain,
    HookPipeline,
    ReporterFanout,
    Resolution,
    ResolverChain,
)
from host.instance import PluginInstance, PluginSpec, PluginState, StateListener
from host.lifecycle import Admit, PluginLifecycle, _LaunchFailed, _Superseded
from host.sandbox import SandboxSettings, is_plugin_uid, uid_for
from host.services.backchannel import HostServices
from host.services.plugin_manager import PluginRegistry
from host.supervise import DEFAULT_RESTART_POLICY, RestartPolicy
from loader.errors import LoaderError
from loader.host_modules import HOST_VERSION
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import network_pb2, plugins_pb2, resolver_pb2

__all__ = ["PluginHost", "PluginInstance", "PluginSpec", "PluginState", "StateListener"]

log = logging.getLogger("pm_plugins.runtime")


class PluginHost(PluginLifecycle):
    """Every plugin of one host: lifecycle, supervision, state, and the dispatch chains."""

    def __init__(
        self,
        services: HostServices | None = None,
        *,
        base_directory: str = "",
        sandbox: SandboxSettings | None = None,
        host_version: str = HOST_VERSION,
        handshake_timeout: float = 10.0,
        stop_grace: float = 2.0,
        restart: RestartPolicy | None = DEFAULT_RESTART_POLICY,
        on_state: StateListener | None = None,
        cache_max_ttl: float = DEFAULT_CACHE_MAX_TTL,
        admit: Admit | None = None,
    ) -> None:
        """`restart=None` turns supervision off: a crashed plugin stays CRASHED.

        `cache_max_ttl` caps how long any decider's cached answer is reused (seconds, > 0).

        `on_state(name, state, reason)` is called on a thread of its own, in the order the
        changes happened, never under the host's lock: a listener may call back into the host
        (start, stop, get) and cannot stall a crash being handled. Its exceptions are logged.
        """
        self.cache = DecisionCache(max_ttl=cache_max_ttl)  # ValueError before anything else
        self.admit = admit  # asked before every start and restart (host.lifecycle.Admit)
        self.registry: PluginRegistry | None = None  # installs for RegisterPlugin (the booted host)
        self.services = services if services is not None else HostServices()
        if self.services.plugin_manager is None:
            self.services.plugin_manager = self
        if self.services.forget_verdicts is None:
            self.services.forget_verdicts = self.cache.forget
        self.services.config.add_listener(self._config_changed)
        #: Each plugin's data folder is `<base_directory>/<name>` (a temporary root if "",
        #: made at the first start and removed by stop_all).
        self.base_directory = base_directory
        self._temporary_base = ""
        self._uids: dict[str, int] = {}  # each plugin's own uid (used when the host is root)
        self.sandbox = sandbox if sandbox is not None else SandboxSettings()
        self.host_version = host_version
        self.handshake_timeout = handshake_timeout
        self.stop_grace = stop_grace
        self.restart = restart
        self.on_state = on_state
        self.counters = Counters()
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
            self._uids[spec.name] = self._uid_of(spec.name)
            return instance

    def _uid_of(self, name: str) -> int:
        """The plugin's own uid: the one that owns its data folder from an earlier run, else
        a fresh one; never one another plugin has or whose data folder it owns (uids are not
        handed out by the order plugins are added)."""
        owners: dict[str, int] = {}
        if self.base_directory and os.path.isdir(self.base_directory):
            for entry in os.scandir(self.base_directory):
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        owners[entry.name] = entry.stat(follow_symlinks=False).st_uid
        taken = set(self._uids.values()) | {u for n, u in owners.items() if n != name}
        earlier = owners.get(name)
        if earlier is not None and is_plugin_uid(earlier) and earlier not in taken:
            return earlier
        return uid_for(name, taken=taken)

    def plugin_of(self, pid: int) -> str | None:
        """The plugin whose process (or a descendant of it) `pid` is, None for none."""
        for instance in self.plugins():
            processes = (instance.process, instance._attempt)
            if any(p is not None and p.owns(pid) for p in processes):
                return instance.name
        return None

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

    def remove(self, name: str) -> None:
        """Stop a plugin and forget it (unregistered at run time); its name may be added again."""
        self.stop(name)
        with self._lock:
            self._plugins.pop(name, None)
            self._uids.pop(name, None)
            self._rebuild()

    def refuse(self, name: str, reason: str) -> None:
        """Stop a plugin the host no longer lets run, and mark it FAILED with `reason`."""
        self.stop(name)
        instance = self.get(name)
        with self._lock:
            self._set(instance, PluginState.FAILED, reason)
        log.error("%s", reason)

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
        if self._temporary_base:
            shutil.rmtree(self._temporary_base, ignore_errors=True)
            self.base_directory = self._temporary_base = ""

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

        deciders = having("decider")
        joined_or_left = {m.name for m in self._deciders.members} ^ {i.name for i in deciders}
        for name in joined_or_left:  # a new process, or none: its answers die with the old one
            self.cache.forget(name)
        self._deciders = DeciderChain(deciders, self.counters, self.cache)
        self._resolvers = ResolverChain(having("resolver"), self.counters)
        self._hooks = HookPipeline(having("hook"), self.counters)
        old, self._reporters = self._reporters, ReporterFanout(having("reporter"), self.counters)
        threading.Thread(target=old.close, daemon=True).start()

    def _config_changed(self, owner: str, full_key: str) -> None:
        """Any config value changed: forget every cached answer. Not only the owner's: a
        privileged plugin may read any key. (A plugin that applies the change a moment later
        should call `pm_plugin.forget_cached_verdicts()` once it has.)"""
        log.debug("config %s of %s changed; the decision cache is cleared", full_key, owner)
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
            args = self._configure_args(instance.spec, self.data_dir_of(instance.spec.name))
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

    def register_plugin(self, registrar: str, config: plugins_pb2.PluginConfig) -> None:
        """PluginRegistry: handed to `registry` (the booted host's), if this host has one."""
        if self.registry is None:
            raise NotImplementedError("this host cannot install plugins (it was not booted)")
        self.registry.register_plugin(registrar, config)

    def unregister_plugin(self, registrar: str, name: str) -> None:
        if self.registry is None:
            raise NotImplementedError("this host cannot uninstall plugins (it was not booted)")
        self.registry.unregister_plugin(registrar, name)

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
