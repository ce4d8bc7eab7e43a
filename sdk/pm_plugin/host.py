"""The host's services as a plugin sees them: config, notifications, plugin manager, and our
decision cache (forget this plugin's cached verdicts).

They reach the host over the broker backchannel named in Configure. The host decides who
the plugin is on that connection; nothing here claims an identity.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import grpc

from pm_plugin.wire.pmplugin.v1 import extensions_pb2, extensions_pb2_grpc
from pm_plugin.wire.portmaster import (
    config_pb2,
    config_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
    plugins_pb2,
    plugins_pb2_grpc,
)

log = logging.getLogger("pm_plugin")

Value = config_pb2.Value
OptionType = config_pb2.OptionType

#: Python value kinds -> the PR's option types.
_OPTION_TYPES: dict[type, int] = {
    str: config_pb2.OPTION_TYPE_STRING,
    list: config_pb2.OPTION_TYPE_STRING_ARRAY,
    int: config_pb2.OPTION_TYPE_INT,
    bool: config_pb2.OPTION_TYPE_BOOL,
}


def to_value(value: str | int | bool | Sequence[str]) -> config_pb2.Value:
    """A Python value as the PR's `Value` message."""
    if isinstance(value, bool):
        return config_pb2.Value(bool=value)
    if isinstance(value, int):
        return config_pb2.Value(int=value)
    if isinstance(value, str):
        return config_pb2.Value(string=value)
    return config_pb2.Value(string_array=list(value))


class Config:
    """The host's configuration system, scoped to this plugin's `plugins/<name>/` keys.

    A privileged plugin names every key in full (as in the PR), yet registers its own options
    under `plugins/<name>/`; `own` is that prefix for a privileged plugin, so a short key
    (no "/") means its own option in both modes and the same code runs either way."""

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0, own: str = "") -> None:
        self._stub = config_pb2_grpc.ConfigServiceStub(channel)
        self._timeout = timeout
        self._own = own

    def _key(self, key: str) -> str:
        return key if not self._own or "/" in key else self._own + key

    def register_option(
        self,
        key: str,
        default: str | int | bool | Sequence[str],
        *,
        name: str = "",
        help: str = "",
        description: str = "",
    ) -> None:
        """Register an option; the host stores it as `plugins/<this plugin>/<key>`."""
        kind = list if isinstance(default, list) else type(default)
        option = config_pb2.Option(
            name=name or key,
            help=help,
            description=description,
            key=key,
            default=to_value(default),
            option_type=cast(Any, _OPTION_TYPES[kind]),
        )
        self._stub.RegisterOption(config_pb2.RegisterRequest(option=option), timeout=self._timeout)

    def get(self, key: str) -> config_pb2.Value:
        """The option's current value (default until the user sets one)."""
        request = config_pb2.GetValueRequest(key=self._key(key))
        reply = self._stub.GetValue(request, timeout=self._timeout)
        value: config_pb2.Value = reply.value
        return value

    def get_string(self, key: str) -> str:
        return self.get(key).string

    def get_int(self, key: str) -> int:
        return self.get(key).int

    def get_bool(self, key: str) -> bool:
        return self.get(key).bool

    def get_string_array(self, key: str) -> list[str]:
        return list(self.get(key).string_array)

    def watch(self, *keys: str) -> Iterator[tuple[str, config_pb2.Value]]:
        """Yield (full key, value) on every change; the host re-sends all watched keys."""
        full = [self._key(k) for k in keys]
        stream = self._stub.WatchValues(config_pb2.WatchChangesRequest(keys=full))
        for msg in stream:
            yield msg.key, msg.value

    def on_change(
        self, keys: Sequence[str], callback: Callable[[str, config_pb2.Value], None]
    ) -> threading.Thread:
        """Run `callback` in a daemon thread for every change to `keys`."""

        def run() -> None:
            try:
                for key, value in self.watch(*keys):
                    callback(key, value)
            except grpc.RpcError as err:
                code = cast(grpc.Call, err).code()
                if code not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                    log.error("watching %s failed: %s", ", ".join(keys), err)

        thread = threading.Thread(target=run, name="pm-plugin-watch", daemon=True)
        thread.start()
        return thread


class Notifier:
    """The host's notifications, with the action the user picks streamed back."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = notification_pb2_grpc.NotificationServiceStub(channel)

    def notify(
        self,
        title: str,
        message: str,
        *,
        actions: Sequence[tuple[str, str]] = (),
        event_id: str = "",
        kind: int = notification_pb2.NOTIFICATION_TYPE_INFO,
        timeout: float | None = None,
    ) -> str | None:
        """Show a notification; with custom `actions` (id, text), wait for the user's pick.

        Returns the selected action id, or None when there were no custom actions, the user
        never answered within `timeout`, or the host dropped the notification.
        """
        notification = notification_pb2.Notification(
            event_id=event_id,
            type=cast(Any, kind),
            title=title,
            message=message,
            actions=[notification_pb2.NotificationAction(id=i, text=t) for i, t in actions],
        )
        stream = self._stub.CreateNotification(
            notification_pb2.CreateNotificationRequest(notification=notification), timeout=timeout
        )
        try:
            for reply in stream:
                selected: str = reply.selected_action_id
                return selected
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return None
            raise
        return None


class PluginManager:
    """The host's plugin manager; only a privileged plugin gets one."""

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0) -> None:
        self._stub = plugins_pb2_grpc.PluginManagerServiceStub(channel)
        self._timeout = timeout

    def list_plugins(self) -> list[plugins_pb2.Plugin]:
        reply = self._stub.ListPlugins(plugins_pb2.ListPluginsRequest(), timeout=self._timeout)
        return list(reply.plugins)

    def start_plugin(self, name: str) -> None:
        self._stub.StartPlugin(plugins_pb2.StartPluginRequest(name=name), timeout=self._timeout)

    def stop_plugin(self, name: str) -> None:
        self._stub.StopPlugin(plugins_pb2.StopPluginRequest(name=name), timeout=self._timeout)


def forget_cached_verdicts(channel: grpc.Channel, timeout: float = 10.0) -> bool:
    """Ask the host to forget every verdict this plugin gave with a cache TTL.

    Returns False when the host does not offer it (a host of the PR's API only, which caches
    nothing of ours); other failures raise grpc.RpcError, as the other services do.
    """
    stub = extensions_pb2_grpc.DecisionCacheServiceStub(channel)
    try:
        stub.ForgetCachedVerdicts(extensions_pb2.ForgetCachedVerdictsRequest(), timeout=timeout)
    except grpc.RpcError as err:
        if cast(grpc.Call, err).code() == grpc.StatusCode.UNIMPLEMENTED:
            return False
        raise
    return True


def plain(value: config_pb2.Value) -> Any:
    """A `Value` as its most specific Python value (array, string, int, then bool)."""
    if value.string_array:
        return list(value.string_array)
    if value.string:
        return value.string
    if value.int:
        return value.int
    return value.bool
