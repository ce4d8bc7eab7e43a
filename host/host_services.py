"""The host services a plugin calls back into over its broker backchannel.

Why this exists: a plugin written against the PR's Go `framework` expects the host to serve
`ConfigService`, `NotificationService` and `PluginManagerService` on the broker connection whose
id the host put into `ConfigureRequest.backchannel_id`, and it calls them from its init hooks,
while Configure is still pending. This module is that side of the wire, real and in memory:

- `ConfigStore` and `NotificationCenter` hold the state of the whole host (every plugin's options
  and pending notifications); the host's own code and its user reach them directly.
- `ConfigServicer`, `NotificationServicer` and the plugin-manager servicers are made per plugin:
  they see that state through the identity the host gave the connection, never a name taken from
  a request.
- `HostServices.serve_backchannel` starts one small gRPC server for one plugin on a unix socket.

Where this is stricter than the PR's host (see WIRE-NOTES.md): an unprivileged plugin's config
key must be a plain relative key inside its own namespace `plugins/<name>/`, and anything else
is refused with PERMISSION_DENIED naming the key (the PR rewrites it silently); the plugin
manager is served only to privileged plugins and answers everyone else with a clear refusal;
messages are bounded to a few MiB; a plugin cannot hold more concurrent calls than the server
has worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

import grpc

from loader.errors import LoaderError
from pm_plugin.wire.portmaster import (
    config_pb2,
    config_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
    plugins_pb2,
    plugins_pb2_grpc,
)

__all__ = [
    "BACKCHANNEL_WORKERS",
    "HOST_OWNER",
    "MAX_MESSAGE_BYTES",
    "ActionChoice",
    "ConfigServicer",
    "ConfigStore",
    "HostServices",
    "NotificationCenter",
    "NotificationServicer",
    "PendingNotification",
    "PluginManagerBackend",
    "PluginManagerServicer",
    "Prompt",
    "Subscription",
    "UnknownNotificationError",
    "UnprivilegedPluginManagerServicer",
]

_log = logging.getLogger(__name__)

#: The owner name of options the host registers itself (e.g. `core/...`).
HOST_OWNER = "host"
#: Receive and send limit of a backchannel server (go-plugin would allow 2 GiB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Worker threads of one backchannel server, and the most calls a plugin may have open at once
#: there: watch and notification streams each hold a worker while open, so a plugin that opens
#: more gets RESOURCE_EXHAUSTED instead of starving its own unary calls forever.
BACKCHANNEL_WORKERS = 16
#: Longest config key a plugin may name, so refusals and lookups stay small.
MAX_KEY_LENGTH = 256

_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
#: A plugin name as used in namespaces and event ids: one segment, so no "/" and no ":".
_PLUGIN_NAME_RE = re.compile(_SEGMENT)
#: A plain relative key. No segment may start with ".", so "." and ".." segments cannot occur.
_RELATIVE_KEY_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
#: sun_path holds 108 bytes including the terminating NUL.
_MAX_UNIX_PATH_BYTES = 107

_T = TypeVar("_T")


def _quote(text: str) -> str:
    """Quote a value taken from a request for an error message: escaped and bounded."""
    shown = text if len(text) <= 200 else text[:200] + "..."
    return json.dumps(shown)


def _check_plugin_name(name: str) -> None:
    if not _PLUGIN_NAME_RE.fullmatch(name):
        raise ValueError(
            f"plugin name {_quote(name)} cannot name a host-services namespace: expected letters, "
            "digits, '_', '.' or '-', not starting with '.' or '-'"
        )


def _is_own_relative_key(key: str) -> bool:
    """True for a plain relative key that stays inside a plugin's own namespace."""
    return (
        len(key) <= MAX_KEY_LENGTH
        and _RELATIVE_KEY_RE.fullmatch(key) is not None
        and not key.startswith("plugins/")
    )


def _copy_value(value: config_pb2.Value) -> config_pb2.Value:
    copied = config_pb2.Value()
    copied.CopyFrom(value)
    return copied


def _exception_text(exc: BaseException) -> str:
    """An exception's message without the quotes `str(KeyError(...))` adds."""
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


# --- config -----------------------------------------------------------------------------------


@dataclass
class _Entry:
    option: config_pb2.Option
    owner: str
    value: config_pb2.Value | None = None

    def effective(self) -> config_pb2.Value:
        return _copy_value(self.value if self.value is not None else self.option.default)


class Subscription:
    """A watch on some full config keys; iterate it for `(full_key, value)` until `close()`.

    On any change to one of its keys it receives the current value of every key it watches
    (the PR's semantics). It keeps only the newest such snapshot: one not yet consumed is
    replaced, never queued, so a slow reader holds bounded memory and still sees the last state.
    """

    def __init__(self, store: ConfigStore, full_keys: tuple[str, ...]) -> None:
        self.keys = full_keys
        self._store = store
        self._cond = threading.Condition()
        self._snapshot: list[tuple[str, config_pb2.Value]] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def __iter__(self) -> Iterator[tuple[str, config_pb2.Value]]:
        """Block for each change; ends once the subscription is closed."""
        while True:
            with self._cond:
                while self._snapshot is None and not self._closed:
                    self._cond.wait()
                snapshot = self._snapshot
                self._snapshot = None
            if snapshot is None:  # closed
                return
            yield from snapshot

    def close(self) -> None:
        """Stop watching and end every iteration; idempotent and safe from any thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._snapshot = None
            self._cond.notify_all()
        self._store._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _offer(self, snapshot: list[tuple[str, config_pb2.Value]]) -> None:
        with self._cond:
            if not self._closed:
                self._snapshot = snapshot
                self._cond.notify_all()


class ConfigStore:
    """The host's whole configuration, in memory and thread-safe, keyed by full key.

    Plugins' options live under `plugins/<name>/`; the host registers its own (e.g. `core/dns`)
    with owner `HOST_OWNER`. Values are set by the host's own code or its user, never by a plugin.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._subscriptions: set[Subscription] = set()

    def register_option(self, full_key: str, option: config_pb2.Option, owner: str) -> None:
        """Register (or, by the same owner, re-register) an option under `full_key`.

        A value already set is kept. Raises ValueError if another owner holds the key.
        """
        if not full_key:
            raise ValueError("a config option needs a non-empty key")
        stored = config_pb2.Option()
        stored.CopyFrom(option)
        stored.key = full_key
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is None:
                self._entries[full_key] = _Entry(stored, owner)
                return
            if entry.owner != owner:
                raise ValueError(
                    f"config key {_quote(full_key)} is already registered by {_quote(entry.owner)}"
                )
            before = entry.effective()
            entry.option = stored
            if entry.effective() != before:
                self._notify_locked(full_key)

    def get(self, full_key: str) -> config_pb2.Value:
        """The value set for `full_key`, else its default (a copy). KeyError if unknown."""
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is None:
                raise KeyError(full_key)
            return entry.effective()

    def set(self, full_key: str, value: config_pb2.Value) -> None:
        """Set the value of a registered option and notify its watchers. KeyError if unknown."""
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is None:
                raise KeyError(full_key)
            entry.value = _copy_value(value)
            self._notify_locked(full_key)

    def subscribe(self, full_keys: Iterable[str]) -> Subscription:
        """Watch these registered keys (duplicates dropped). KeyError names an unknown one."""
        keys = tuple(dict.fromkeys(full_keys))
        with self._lock:
            for key in keys:
                if key not in self._entries:
                    raise KeyError(key)
            subscription = Subscription(self, keys)
            self._subscriptions.add(subscription)
        return subscription

    def registered_keys(self) -> list[str]:
        """Every registered full key, sorted."""
        with self._lock:
            return sorted(self._entries)

    @property
    def open_subscriptions(self) -> int:
        """How many subscriptions are open (each open watch stream holds one)."""
        with self._lock:
            return len(self._subscriptions)

    def _notify_locked(self, changed_key: str) -> None:
        for subscription in self._subscriptions:
            if changed_key in subscription.keys:
                subscription._offer(
                    [(key, self._entries[key].effective()) for key in subscription.keys]
                )

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)


class ConfigServicer(config_pb2_grpc.ConfigServiceServicer):
    """`ConfigService` for one plugin: its options live under `plugins/<plugin_name>/`.

    An unprivileged plugin names keys relative to its namespace and can reach nothing else; a
    privileged plugin names any full key, its own options included (`plugins/<name>/<key>`).
    """

    def __init__(self, store: ConfigStore, plugin_name: str, privileged: bool) -> None:
        _check_plugin_name(plugin_name)
        self._store = store
        self._name = plugin_name
        self._privileged = privileged
        self._prefix = f"plugins/{plugin_name}/"

    def RegisterOption(
        self, request: config_pb2.RegisterRequest, context: grpc.ServicerContext
    ) -> config_pb2.RegisterResponse:
        key = request.option.key
        if not _is_own_relative_key(key):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"plugin {_quote(self._name)} cannot register config option {_quote(key)}: an "
                f'option key is a plain relative key such as "filter/enabled", stored under '
                f"{self._prefix}",
            )
        try:
            self._store.register_option(self._prefix + key, request.option, owner=self._name)
        except ValueError as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, _exception_text(exc))
        return config_pb2.RegisterResponse()

    def GetValue(
        self, request: config_pb2.GetValueRequest, context: grpc.ServicerContext
    ) -> config_pb2.GetValueResponse:
        full_key = self._full_key(request.key, "read", context)
        try:
            value = self._store.get(full_key)
        except KeyError:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"config key {_quote(full_key)} is not registered"
            )
        return config_pb2.GetValueResponse(value=value)

    def WatchValues(
        self, request: config_pb2.WatchChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[config_pb2.WatchChangesResponse]:
        full_keys = [self._full_key(key, "watch", context) for key in request.keys]
        try:
            subscription = self._store.subscribe(full_keys)
        except KeyError as exc:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"config key {_quote(_exception_text(exc))} is not registered",
            )
        # The callback runs when the plugin cancels or the server stops; False means the RPC
        # already ended before we could register it.
        if not context.add_callback(subscription.close):
            subscription.close()
        try:
            for full_key, value in subscription:
                yield config_pb2.WatchChangesResponse(key=full_key, value=value)
        finally:
            subscription.close()

    def _full_key(self, key: str, verb: str, context: grpc.ServicerContext) -> str:
        if self._privileged:
            return key
        if _is_own_relative_key(key):
            return self._prefix + key
        context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"plugin {_quote(self._name)} may not {verb} config key {_quote(key)}: unprivileged "
            f"plugins reach only their own keys under {self._prefix}",
        )


# --- notifications ----------------------------------------------------------------------------


class ActionChoice(NamedTuple):
    """One action of a notification as the user sees it."""

    id: str
    text: str
    #: True when the action has no `action_type`: picking it is streamed back to the plugin.
    is_custom: bool


@dataclass(frozen=True)
class PendingNotification:
    """A notification as the host shows it to its user."""

    plugin: str
    #: The host's event id, namespaced by plugin: `<plugin>:<the plugin's event id or a uuid>`.
    event_id: str
    title: str
    message: str
    actions: tuple[ActionChoice, ...]
    #: True while the plugin waits for the user's pick (only then `answer` applies).
    needs_answer: bool = True


class UnknownNotificationError(KeyError):
    """No notification with this event id is waiting for an answer."""

    def __str__(self) -> str:
        return _exception_text(self)


def _has_custom_action(notification: notification_pb2.Notification) -> bool:
    return any(action.WhichOneof("action_type") is None for action in notification.actions)


class Prompt:
    """A notification that waits for the user's answer, from the asking side."""

    def __init__(self, center: NotificationCenter, info: PendingNotification) -> None:
        self.info = info
        self._center = center
        self._done = threading.Event()
        self._selected: str | None = None

    def wait(self, timeout: float | None = None) -> str | None:
        """The action id the user picked; None if withdrawn (or the timeout passed first)."""
        self._done.wait(timeout)
        return self._selected

    def withdraw(self) -> None:
        """Drop the notification unless it was answered already; idempotent."""
        self._center._withdraw(self)

    def _resolve(self, action_id: str | None) -> None:
        self._selected = action_id
        self._done.set()


class NotificationCenter:
    """Notifications of every plugin: the ones waiting for an answer and the recently shown.

    `on_new` is called (outside any lock, errors logged) for every notification a plugin creates,
    e.g. to log it or print it to the user.
    """

    def __init__(
        self,
        on_new: Callable[[PendingNotification], None] | None = None,
        keep_shown: int = 100,
    ) -> None:
        self._lock = threading.Lock()
        self._prompts: dict[str, Prompt] = {}
        self._shown: deque[PendingNotification] = deque(maxlen=keep_shown)
        self._on_new = on_new

    def pending(self) -> list[PendingNotification]:
        """The notifications waiting for an answer, oldest first."""
        with self._lock:
            return [prompt.info for prompt in self._prompts.values()]

    def shown(self) -> list[PendingNotification]:
        """The most recent notifications that needed no answer, oldest first."""
        with self._lock:
            return list(self._shown)

    def answer(self, event_id: str, action_id: str) -> None:
        """Give the user's pick to the plugin waiting on `event_id`.

        Raises:
            UnknownNotificationError (a KeyError): nothing with that id waits for an answer.
            ValueError: the notification has no action with that id.
        """
        with self._lock:
            prompt = self._prompts.get(event_id)
            if prompt is None:
                raise UnknownNotificationError(
                    f"no notification {_quote(event_id)} is waiting for an answer"
                )
            action_ids = [action.id for action in prompt.info.actions]
            if action_id not in action_ids:
                raise ValueError(
                    f"notification {_quote(event_id)} has no action {_quote(action_id)}; its "
                    f"actions are {', '.join(_quote(known) for known in action_ids) or 'none'}"
                )
            del self._prompts[event_id]
            prompt._resolve(action_id)

    def show(self, plugin: str, notification: notification_pb2.Notification) -> PendingNotification:
        """Record a notification that needs no answer (no custom action)."""
        info = self._describe(plugin, notification, needs_answer=False)
        with self._lock:
            self._shown.append(info)
        self._announce(info)
        return info

    def ask(self, plugin: str, notification: notification_pb2.Notification) -> Prompt:
        """Hold a notification until the user answers it or the asker withdraws it.

        Raises ValueError if the same plugin already waits on the same event id.
        """
        info = self._describe(plugin, notification, needs_answer=True)
        prompt = Prompt(self, info)
        with self._lock:
            if info.event_id in self._prompts:
                raise ValueError(
                    f"notification {_quote(info.event_id)} is already waiting for an answer"
                )
            self._prompts[info.event_id] = prompt
        self._announce(info)
        return prompt

    def _withdraw(self, prompt: Prompt) -> None:
        with self._lock:
            if self._prompts.get(prompt.info.event_id) is not prompt:
                return
            del self._prompts[prompt.info.event_id]
            prompt._resolve(None)

    @staticmethod
    def _describe(
        plugin: str, notification: notification_pb2.Notification, needs_answer: bool
    ) -> PendingNotification:
        _check_plugin_name(plugin)
        local_id = notification.event_id or str(uuid.uuid4())
        return PendingNotification(
            plugin=plugin,
            event_id=f"{plugin}:{local_id}",
            title=notification.title,
            message=notification.message,
            actions=tuple(
                ActionChoice(action.id, action.text, action.WhichOneof("action_type") is None)
                for action in notification.actions
            ),
            needs_answer=needs_answer,
        )

    def _announce(self, info: PendingNotification) -> None:
        if self._on_new is None:
            return
        try:
            self._on_new(info)
        except Exception:
            _log.exception("the on_new callback failed for notification %s", info.event_id)


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    """`NotificationService` for one plugin, as the PR's host.

    With at least one custom action the stream stays open until the user answers (one
    `selected_action_id`, then the end) or the plugin cancels (the notification is dropped).
    Otherwise the notification is recorded as shown and the stream ends at once, empty.
    """

    def __init__(self, center: NotificationCenter, plugin_name: str) -> None:
        _check_plugin_name(plugin_name)
        self._center = center
        self._name = plugin_name

    def CreateNotification(
        self,
        request: notification_pb2.CreateNotificationRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[notification_pb2.CreateNotificationResponse]:
        if not request.HasField("notification"):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "CreateNotification needs a notification"
            )
        notification = request.notification
        if not _has_custom_action(notification):
            self._center.show(self._name, notification)
            return
        try:
            prompt = self._center.ask(self._name, notification)
        except ValueError as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, _exception_text(exc))
        if not context.add_callback(prompt.withdraw):
            prompt.withdraw()
        selected = prompt.wait()
        if selected is not None:
            yield notification_pb2.CreateNotificationResponse(selected_action_id=selected)


# --- plugin manager ---------------------------------------------------------------------------


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
        _log.info("plugin %s starts plugin %s", self._name, name)
        self._call(context, lambda: self._backend.start_plugin(name))
        return plugins_pb2.StartPluginResponse()

    def StopPlugin(
        self, request: plugins_pb2.StopPluginRequest, context: grpc.ServicerContext
    ) -> plugins_pb2.StopPluginResponse:
        name = self._target(request.name, "StopPlugin", context)
        _log.info("plugin %s stops plugin %s", self._name, name)
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


# --- the backchannel server -------------------------------------------------------------------


def _shutdown_pool_after(server: grpc.Server, pool: futures.ThreadPoolExecutor) -> None:
    """grpc's server.stop() leaves its thread pool alone; end the pool once the server ended."""
    server.wait_for_termination()
    pool.shutdown(wait=True)


@dataclass
class HostServices:
    """The host services of a whole host; `serve_backchannel` serves them to one plugin."""

    config: ConfigStore = field(default_factory=ConfigStore)
    notifications: NotificationCenter = field(default_factory=NotificationCenter)
    plugin_manager: PluginManagerBackend | None = None

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
        if len(os.fsencode(socket_path)) > _MAX_UNIX_PATH_BYTES:
            raise LoaderError(
                f"cannot serve the host services to plugin {_quote(plugin_name)}: the socket "
                f"path {_quote(socket_path)} is longer than {_MAX_UNIX_PATH_BYTES} bytes"
            )
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
        config_pb2_grpc.add_ConfigServiceServicer_to_server(
            ConfigServicer(self.config, plugin_name, privileged), server
        )
        notification_pb2_grpc.add_NotificationServiceServicer_to_server(
            NotificationServicer(self.notifications, plugin_name), server
        )
        plugins_pb2_grpc.add_PluginManagerServiceServicer_to_server(
            self._plugin_manager_servicer(plugin_name, privileged), server
        )
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
        server.start()
        threading.Thread(
            target=_shutdown_pool_after,
            args=(server, pool),
            name=f"backchannel-{plugin_name}-reaper",
            daemon=True,
        ).start()
        return server

    def _plugin_manager_servicer(
        self, plugin_name: str, privileged: bool
    ) -> plugins_pb2_grpc.PluginManagerServiceServicer:
        if not privileged:
            return UnprivilegedPluginManagerServicer(plugin_name)
        if self.plugin_manager is None:
            return _AbsentPluginManagerServicer(plugin_name)
        return PluginManagerServicer(self.plugin_manager, plugin_name)
