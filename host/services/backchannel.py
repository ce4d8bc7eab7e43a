"""The backchannel server: the host services served to one plugin on a unix socket.

Why this exists: a plugin written against the PR's Go `framework` expects the host to serve
`ConfigService`, `NotificationService` and `PluginManagerService` on the broker connection whose
id the host put into `ConfigureRequest.backchannel_id`; a `pm_plugin` plugin may also call our
`pmplugin.v1.DecisionCacheService` there. `HostServices` holds the state of the
whole host and `serve_backchannel` starts one small gRPC server per plugin, whose servicers see
that state through the identity the host gave the connection, never a name taken from a request.
Messages are bounded to a few MiB, and a plugin cannot hold more concurrent calls than the
server has worker threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from host.services.common import MAX_MESSAGE_BYTES, _check_plugin_name, _quote
from host.services.config import ConfigServicer, ConfigStore
from host.services.decision_cache import DecisionCacheServicer
from host.services.notifications import NotificationCenter, NotificationServicer
from host.services.plugin_manager import (
    PluginManagerBackend,
    PluginManagerServicer,
    UnprivilegedPluginManagerServicer,
    _AbsentPluginManagerServicer,
)
from loader.errors import LoaderError
from pm_plugin.wire.pmplugin.v1 import extensions_pb2_grpc
from pm_plugin.wire.portmaster import config_pb2_grpc, notification_pb2_grpc, plugins_pb2_grpc

__all__ = ["BACKCHANNEL_WORKERS", "HostServices"]

#: Worker threads of one backchannel server, and the most calls a plugin may have open at once
#: there: watch and notification streams each hold a worker while open, so a plugin that opens
#: more gets RESOURCE_EXHAUSTED instead of starving its own unary calls forever.
BACKCHANNEL_WORKERS = 16

#: sun_path holds 108 bytes including the terminating NUL.
_MAX_UNIX_PATH_BYTES = 107


def _shutdown_pool_after(server: grpc.Server, pool: futures.ThreadPoolExecutor) -> None:
    """grpc's server.stop() leaves its thread pool alone; end the pool once the server ended."""
    server.wait_for_termination()
    pool.shutdown(wait=True)


def _check_socket_path(plugin_name: str, socket_path: str) -> None:
    if len(os.fsencode(socket_path)) > _MAX_UNIX_PATH_BYTES:
        raise LoaderError(
            f"cannot serve the host services to plugin {_quote(plugin_name)}: the socket "
            f"path {_quote(socket_path)} is longer than {_MAX_UNIX_PATH_BYTES} bytes"
        )


def _new_server(plugin_name: str) -> tuple[futures.ThreadPoolExecutor, grpc.Server]:
    """A backchannel server, not yet bound, and the thread pool it runs its calls on."""
    pool = futures.ThreadPoolExecutor(
        max_workers=BACKCHANNEL_WORKERS, thread_name_prefix=f"backchannel-{plugin_name}"
    )
    server = grpc.server(
        pool,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
        maximum_concurrent_rpcs=BACKCHANNEL_WORKERS,
    )
    return pool, server


def _bind(
    server: grpc.Server, pool: futures.ThreadPoolExecutor, plugin_name: str, socket_path: str
) -> None:
    """Bind `server` to `unix:<socket_path>`; if it cannot, drop server and pool and raise."""
    try:
        bound = server.add_insecure_port(f"unix:{socket_path}")
    except RuntimeError as exc:
        bound, reason = 0, f": {exc}"
    else:
        reason = ""
    if not bound:
        server.stop(None)
        pool.shutdown(wait=False)
        raise LoaderError(
            f"cannot serve the host services to plugin {_quote(plugin_name)} on unix socket "
            f"{_quote(socket_path)}{reason}"
        )


@dataclass
class HostServices:
    """The host services of a whole host; `serve_backchannel` serves them to one plugin."""

    config: ConfigStore = field(default_factory=ConfigStore)
    notifications: NotificationCenter = field(default_factory=NotificationCenter)
    plugin_manager: PluginManagerBackend | None = None
    #: Forget one plugin's cached decider answers (the runtime's decision cache; None: the
    #: host caches nothing, so a plugin's request has nothing to forget).
    forget_verdicts: Callable[[str], None] | None = None

    def serve_backchannel(
        self, plugin_name: str, privileged: bool, socket_path: str
    ) -> grpc.Server:
        """Start a gRPC server for `plugin_name` on `unix:<socket_path>` and return it.

        `plugin_name` is the identity every service uses; it comes from the host's own record
        of which plugin this broker connection belongs to. Put the socket in a directory only
        the host can reach (0700). The caller stops the server (`server.stop(grace)`); open
        watch and notification streams then end, and the worker threads exit.

        Raises:
            ValueError: `plugin_name` cannot name a namespace (a bug in the caller).
            LoaderError: the socket cannot be served.
        """
        _check_plugin_name(plugin_name)
        _check_socket_path(plugin_name, socket_path)
        pool, server = _new_server(plugin_name)
        self._add_servicers(server, plugin_name, privileged)
        _bind(server, pool, plugin_name, socket_path)
        server.start()
        threading.Thread(
            target=_shutdown_pool_after,
            args=(server, pool),
            name=f"backchannel-{plugin_name}-reaper",
            daemon=True,
        ).start()
        return server

    def _add_servicers(self, server: grpc.Server, plugin_name: str, privileged: bool) -> None:
        config_pb2_grpc.add_ConfigServiceServicer_to_server(
            ConfigServicer(self.config, plugin_name, privileged), server
        )
        notification_pb2_grpc.add_NotificationServiceServicer_to_server(
            NotificationServicer(self.notifications, plugin_name), server
        )
        plugins_pb2_grpc.add_PluginManagerServiceServicer_to_server(
            self._plugin_manager_servicer(plugin_name, privileged), server
        )
        extensions_pb2_grpc.add_DecisionCacheServiceServicer_to_server(
            DecisionCacheServicer(self._forget_verdicts, plugin_name), server
        )

    def _forget_verdicts(self, plugin_name: str) -> None:
        """Looked up at each call: the runtime sets `forget_verdicts` after this was made."""
        forget = self.forget_verdicts
        if forget is not None:
            forget(plugin_name)

    def _plugin_manager_servicer(
        self, plugin_name: str, privileged: bool
    ) -> plugins_pb2_grpc.PluginManagerServiceServicer:
        if not privileged:
            return UnprivilegedPluginManagerServicer(plugin_name)
        if self.plugin_manager is None:
            return _AbsentPluginManagerServicer(plugin_name)
        return PluginManagerServicer(self.plugin_manager, plugin_name)
