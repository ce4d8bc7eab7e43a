"""The plugin-manager service a privileged plugin calls back into, and the refusals for others.

Why this exists: `PluginManagerServicer` lets one privileged plugin list, start and stop the
host's plugins through a `PluginManagerBackend` (the host's loader), and register and unregister
plugins through a backend that is also a `PluginRegistry` (the booted reference host, whose
installer `pm-plugins boot` provides); the plugin manager is served only to privileged plugins,
and everyone else gets a servicer that answers each call with a clear refusal rather than
leaving the service unimplemented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

import grpc

from host.plugin_text import loggable
from host.services.common import _check_plugin_name, _exception_text, _quote
from pm_plugin.wire.portmaster import plugins_pb2, plugins_pb2_grpc

__all__ = [
    "PluginManagerBackend",
    "PluginManagerServicer",
    "PluginRegistry",
    "UnprivilegedPluginManagerServicer",
]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")


class PluginManagerBackend(Protocol):
    """What the plugin manager service needs from the host's plugin loader."""

    def list_plugins(self) -> list[plugins_pb2.Plugin]:
        """Every configured plugin, with its instance when it runs."""
        ...

    def start_plugin(self, name: str) -> None:
        """Start a configured plugin. LookupError: unknown; RuntimeError: cannot start now."""
        ...

    def stop_plugin(self, name: str) -> None:
        """Stop a running plugin. LookupError: unknown; RuntimeError: cannot stop now."""
        ...


@runtime_checkable
class PluginRegistry(Protocol):
    """What RegisterPlugin and UnregisterPlugin need from the host: install a package the
    registering plugin left in its data folder, and remove a plugin it registered.

    `registrar` is the calling plugin's name, from the host's own record of the connection.
    Each refusal is one sentence, its type saying which status answers it: PermissionError
    (PERMISSION_DENIED), ValueError (INVALID_ARGUMENT), RuntimeError (FAILED_PRECONDITION),
    LookupError (NOT_FOUND), NotImplementedError (UNIMPLEMENTED: this host cannot install).
    """

    def register_plugin(self, registrar: str, config: plugins_pb2.PluginConfig) -> None:
        """Install and start the package `<registrar's data folder>/register/<config.name>`."""
        ...

    def unregister_plugin(self, registrar: str, name: str) -> None:
        """Stop and uninstall plugin `name`, which `registrar` registered."""
        ...


#: A refusal's exception type -> its status (the first that matches; NotImplementedError is
#: a RuntimeError, so it comes first).
_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (NotImplementedError, grpc.StatusCode.UNIMPLEMENTED),
    (PermissionError, grpc.StatusCode.PERMISSION_DENIED),
    (LookupError, grpc.StatusCode.NOT_FOUND),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (RuntimeError, grpc.StatusCode.FAILED_PRECONDITION),
)
_MAX_DETAILS = 2048  # a status's details travel in a trailer: keep them well inside its bound


def _clean_plugin(plugin: plugins_pb2.Plugin) -> plugins_pb2.Plugin:
    """A copy without the PLUGIN_TYPE_UNKNOWN entries the PR's host pads `plugin_types` with."""
    cleaned = plugins_pb2.Plugin()
    cleaned.CopyFrom(plugin)
    if cleaned.HasField("config"):
        types = [t for t in cleaned.config.plugin_types if t != plugins_pb2.PLUGIN_TYPE_UNKNOWN]
        del cleaned.config.plugin_types[:]
        cleaned.config.plugin_types.extend(types)
    return cleaned


def _not_yet(method: str) -> str:
    return (
        f"{method} is not available yet in this host: changing which plugins are registered "
        "needs the loader's signature verification and the installer, which a host booted by "
        "`pm-plugins boot` offers"
    )


class PluginManagerServicer(plugins_pb2_grpc.PluginManagerServiceServicer):
    """`PluginManagerService` for one privileged plugin, backed by the host's loader.

    RegisterPlugin and UnregisterPlugin (the PR's path for third-party registries) work when
    the backend is a `PluginRegistry`; otherwise they answer UNIMPLEMENTED. The PR's
    `RegisterPluginRequest` carries only a `PluginConfig`, no package, so the package travels
    by convention: the registering plugin writes what `pm-plugins install ./PKG` would accept
    (a package folder: the artifact and `manifest.dsse.json`; in dev mode also a plugin source
    folder) into its own data folder (its `base_directory`, `<state root>/data/<registrar>/`)
    at `register/<config.name>/`, then calls RegisterPlugin. The host copies it, never
    following a symlink and within the loader's size bounds, into a folder only the host can
    reach, verifies and installs that copy as `install ./PKG` would (no person to say yes: what
    would need one is refused), records that this plugin registered it (plugins.lock
    `registered_by`, shown by `status`), and starts it through the boot path. The config's
    name must be the signed manifest's; its types may only narrow the manifest's; `privileged`
    is refused unless an official key signed it; `static_config` (JSON) becomes the
    plugins.json entry's `config`; `disable_autostart` leaves it stopped. A plugin may
    unregister only plugins it registered, never a host module, nor one another plugin needs.
    Each refusal is one sentence: PERMISSION_DENIED, INVALID_ARGUMENT, FAILED_PRECONDITION or
    NOT_FOUND (see `PluginRegistry`).
    """

    def __init__(self, backend: PluginManagerBackend, plugin_name: str) -> None:
        _check_plugin_name(plugin_name)
        self._backend = backend
        self._name = plugin_name

    def ListPlugins(
        self, request: plugins_pb2.ListPluginsRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.ListPluginsResponse:
        plugins = self._call(context, self._backend.list_plugins)
        return plugins_pb2.ListPluginsResponse(plugins=[_clean_plugin(p) for p in plugins])

    def StartPlugin(
        self, request: plugins_pb2.StartPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.StartPluginResponse:
        name = self._target(request.name, "StartPlugin", context)
        _log.info("plugin %s starts plugin %s", self._name, loggable(name, 256))
        self._call(context, lambda: self._backend.start_plugin(name))
        return plugins_pb2.StartPluginResponse()

    def StopPlugin(
        self, request: plugins_pb2.StopPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.StopPluginResponse:
        name = self._target(request.name, "StopPlugin", context)
        _log.info("plugin %s stops plugin %s", self._name, loggable(name, 256))
        self._call(context, lambda: self._backend.stop_plugin(name))
        return plugins_pb2.StopPluginResponse()

    def RegisterPlugin(
        self, request: plugins_pb2.RegisterPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.RegisterPluginResponse:
        registry = self._registry("RegisterPlugin", context)
        config = request.config
        _log.info("plugin %s registers plugin %s", self._name, loggable(config.name, 256))
        self._change(context, lambda: registry.register_plugin(self._name, config))
        return plugins_pb2.RegisterPluginResponse()

    def UnregisterPlugin(
        self, request: plugins_pb2.UnregisterPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.UnregisterPluginResponse:
        registry = self._registry("UnregisterPlugin", context)
        name = self._target(request.name, "UnregisterPlugin", context)
        _log.info("plugin %s unregisters plugin %s", self._name, loggable(name, 256))
        self._change(context, lambda: registry.unregister_plugin(self._name, name))
        return plugins_pb2.UnregisterPluginResponse()

    def _registry(self, method: str, context: grpc.ServicerContext) -> PluginRegistry:
        backend = self._backend
        if not isinstance(backend, PluginRegistry):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, _not_yet(method))
        assert isinstance(backend, PluginRegistry)  # context.abort raised otherwise
        return backend

    def _change(self, context: grpc.ServicerContext, call: Callable[[], None]) -> None:
        """Run a registration change; a refusal is its status and one sentence, anything
        else INTERNAL (the host's log has the traceback)."""
        try:
            call()
            return
        except Exception as exc:
            code = next((c for kind, c in _CODES if isinstance(exc, kind)), None)
            if code is None:
                _log.exception("plugin %s: the plugin manager failed", self._name)
                code, details = grpc.StatusCode.INTERNAL, "the host failed; its log says why"
            else:
                details = _exception_text(exc)
        shown = loggable(details, _MAX_DETAILS)  # one line, any odd character escaped
        _log.warning("plugin %s was refused: %s", self._name, shown)
        context.abort(code, shown)

    @staticmethod
    def _target(name: str, method: str, context: grpc.ServicerContext) -> str:
        if not name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method} needs a plugin name")
        return name

    @staticmethod
    def _call(context: grpc.ServicerContext, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except LookupError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, _exception_text(exc))
        except RuntimeError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, _exception_text(exc))


class _RefusingPluginManagerServicer(plugins_pb2_grpc.PluginManagerServiceServicer):
    """Answers every plugin-manager call with one status and one sentence."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        self._details = details

    def ListPlugins(
        self, request: plugins_pb2.ListPluginsRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.ListPluginsResponse:
        context.abort(self._code, self._details)

    def RegisterPlugin(
        self, request: plugins_pb2.RegisterPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.RegisterPluginResponse:
        context.abort(self._code, self._details)

    def UnregisterPlugin(
        self, request: plugins_pb2.UnregisterPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.UnregisterPluginResponse:
        context.abort(self._code, self._details)

    def StopPlugin(
        self, request: plugins_pb2.StopPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.StopPluginResponse:
        context.abort(self._code, self._details)

    def StartPlugin(
        self, request: plugins_pb2.StartPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.StartPluginResponse:
        context.abort(self._code, self._details)


class UnprivilegedPluginManagerServicer(_RefusingPluginManagerServicer):
    """The plugin manager as an unprivileged plugin sees it: every call PERMISSION_DENIED.

    A Go plugin decides by its `privileged` flag whether it has a client, so the host still
    answers the service with a clear error rather than leaving it unimplemented.
    """

    def __init__(self, plugin_name: str) -> None:
        super().__init__(
            grpc.StatusCode.PERMISSION_DENIED,
            f"plugin {_quote(plugin_name)} is not privileged: the plugin manager is served only "
            "to privileged plugins",
        )


class _AbsentPluginManagerServicer(_RefusingPluginManagerServicer):
    """A privileged plugin in a host that has no plugin manager to offer."""

    def __init__(self, plugin_name: str) -> None:
        super().__init__(
            grpc.StatusCode.UNIMPLEMENTED,
            f"this host has no plugin manager to serve to plugin {_quote(plugin_name)}",
        )
