"""The plugin-manager service a privileged plugin calls back into, and the refusals for others.

Why this exists: `PluginManagerServicer` lets one privileged plugin list, start and stop the
host's plugins through a `PluginManagerBackend` (the host's loader); the plugin manager is served
only to privileged plugins, and everyone else gets a servicer that answers each call with a clear
refusal rather than leaving the service unimplemented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

import grpc

from host.plugin_text import loggable
from host.services.common import _check_plugin_name, _exception_text, _quote
from pm_plugin.wire.portmaster import plugins_pb2, plugins_pb2_grpc

__all__ = [
    "PluginManagerBackend",
    "PluginManagerServicer",
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
        f"{method} is not available yet: changing which plugins are registered needs the "
        "loader's signature verification"
    )


class PluginManagerServicer(plugins_pb2_grpc.PluginManagerServiceServicer):
    """`PluginManagerService` for one privileged plugin, backed by the host's loader."""

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
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _not_yet("RegisterPlugin"))

    def UnregisterPlugin(
        self, request: plugins_pb2.UnregisterPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.UnregisterPluginResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _not_yet("UnregisterPlugin"))

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
