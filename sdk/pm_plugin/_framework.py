"""The plugin object: what a plugin registers and what it learns from Configure.

The Python form of the PR's `framework` package: register a decider, reporter or resolver
(a plain function or an object), hooks on a `NullPlugin`, `on_init`/`on_shutdown`
callbacks, and, once configured, the plugin's name, base directory, static config and the
host services. `Plugin.serve()` (in `_plugin`) hands it to the go-plugin server in
`_server`, which sees only this `PluginBase`: so nothing here imports `_server`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import grpc

from pm_plugin.hooks import NullPlugin
from pm_plugin.host import Config, Notifier, PluginManager, forget_cached_verdicts
from pm_plugin.types import Connection, DNSQuestion, DNSResponse
from pm_plugin.wire.portmaster import base_pb2

log = logging.getLogger("pm_plugin")

DeciderFunc = Callable[[Connection], object]
ReporterFunc = Callable[[Connection], None]
ResolverFunc = Callable[[DNSQuestion, Connection], DNSResponse | None]
Callback = Callable[[], None]


@runtime_checkable
class DeciderObject(Protocol):
    def decide(self, connection: Connection) -> object: ...


@runtime_checkable
class ReporterObject(Protocol):
    def report(self, connection: Connection) -> None: ...


@runtime_checkable
class ResolverObject(Protocol):
    def resolve(self, question: DNSQuestion, connection: Connection) -> DNSResponse | None: ...


class NotConfiguredError(RuntimeError):
    """A host service or Configure value was used before the host called Configure."""


class PluginBase:
    """One plugin: its registered types, callbacks, and what Configure told it.

    All of `Plugin` but `serve()`, so that `_server` can take one without importing it.
    """

    def __init__(self) -> None:
        self.decider: DeciderFunc | None = None
        self.reporter: ReporterFunc | None = None
        self.resolver: ResolverFunc | None = None
        self.hooks: NullPlugin | None = None
        #: Serve our pmplugin.v1 extensions; False makes this a plugin of the PR's API only.
        self.offer_extensions = True
        self._on_init: list[Callback] = []
        self._on_shutdown: list[Callback] = []
        self._request: base_pb2.ConfigureRequest | None = None
        self._channel: grpc.Channel | None = None

    # -- registration (before serve) ------------------------------------------------------

    def register_decider(self, decider: DeciderFunc | DeciderObject) -> None:
        """Register the decider: `f(connection)` or an object with `decide(connection)`."""
        if self.decider is not None:
            raise ValueError("decider: plugin type already registered")
        self.decider = decider.decide if isinstance(decider, DeciderObject) else decider

    def register_reporter(self, reporter: ReporterFunc | ReporterObject) -> None:
        """Register the reporter: `f(connection)` or an object with `report(connection)`."""
        if self.reporter is not None:
            raise ValueError("reporter: plugin type already registered")
        self.reporter = reporter.report if isinstance(reporter, ReporterObject) else reporter

    def register_resolver(self, resolver: ResolverFunc | ResolverObject) -> None:
        """Register the resolver: `f(question, connection) -> DNSResponse | None` (None =
        not handled) or an object with `resolve(question, connection)`."""
        if self.resolver is not None:
            raise ValueError("resolver: plugin type already registered")
        self.resolver = resolver.resolve if isinstance(resolver, ResolverObject) else resolver

    def register_hooks(self, hooks: NullPlugin) -> None:
        """Register hooks: an instance of a `NullPlugin` subclass."""
        if self.hooks is not None:
            raise ValueError("hook: plugin type already registered")
        if not isinstance(hooks, NullPlugin):
            raise TypeError("hooks must be an instance of a NullPlugin subclass")
        self.hooks = hooks

    def on_init(self, fn: Callback) -> Callback:
        """Run `fn` inside Configure (host services are reachable); an exception fails it."""
        self._on_init.append(fn)
        return fn

    def on_shutdown(self, fn: Callback) -> Callback:
        """Run `fn` when the host asks the plugin to shut down."""
        self._on_shutdown.append(fn)
        return fn

    # -- what Configure told us -----------------------------------------------------------

    @property
    def request(self) -> base_pb2.ConfigureRequest:
        if self._request is None:
            raise NotConfiguredError("the host has not configured this plugin yet")
        return self._request

    @property
    def name(self) -> str:
        """The plugin's name as the user configured it."""
        return self.request.config.name

    @property
    def base_directory(self) -> str:
        return self.request.base_directory

    @property
    def host_version(self) -> str:
        return self.request.portmaster_version

    @property
    def privileged(self) -> bool:
        return self.request.config.privileged

    @property
    def static_config(self) -> Any:
        """The `config` value of this plugin's plugins.json entry, parsed; None if absent."""
        raw = self.request.config.static_config
        return json.loads(raw) if raw else None

    def config(self) -> Config:
        """The host's config service: register options, read and watch their values (keys
        are relative to the plugin's own `plugins/<name>/`, privileged or not)."""
        own = f"plugins/{self.name}/" if self.privileged else ""
        return Config(self._backchannel(), own=own)

    def notify(
        self,
        title: str,
        message: str,
        *,
        actions: Sequence[tuple[str, str]] = (),
        event_id: str = "",
        timeout: float | None = None,
    ) -> str | None:
        """Show a notification; with custom `actions` (id, text) wait for the user's pick.

        See `Notifier.notify`.
        """
        return Notifier(self._backchannel()).notify(
            title, message, actions=actions, event_id=event_id, timeout=timeout
        )

    def plugin_manager(self) -> PluginManager | None:
        """The host's plugin manager, or None unless this plugin is privileged."""
        return PluginManager(self._backchannel()) if self.privileged else None

    def forget_cached_verdicts(self) -> bool:
        """Tell the host to forget every verdict this plugin gave with a cache TTL, e.g. once
        it applied new rules: until then the host may keep reusing them (up to their TTL).

        Returns False when the host does not offer it. Safe to call from a decider.
        """
        return forget_cached_verdicts(self._backchannel())

    def _backchannel(self) -> grpc.Channel:
        self.request  # noqa: B018 - raises NotConfiguredError before Configure
        if self._channel is None:
            raise NotConfiguredError("the host offers no backchannel (backchannel_id 0)")
        return self._channel

    # -- lifecycle, called by the server --------------------------------------------------

    def configure(self, request: base_pb2.ConfigureRequest, channel: grpc.Channel | None) -> None:
        self._request = request
        self._channel = channel
        for fn in self._on_init:
            fn()

    def shutdown(self) -> None:
        for fn in self._on_shutdown:
            fn()
