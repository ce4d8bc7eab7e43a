"""The host services a plugin under test reaches: config, notifications, its decision cache.

Why this exists: a plugin registers options, watches them, notifies the user and forgets
its cached verdicts through services its host serves on go-plugin's broker. For a test these
are small and in memory, and the test drives the other side: it sets an option and sees
the plugin's watch receive it, and answers a notification with an action. The rules are
the host's for an unprivileged plugin: keys are relative to `plugins/<name>/`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from pm_plugin.wire.pmplugin.v1 import extensions_pb2, extensions_pb2_grpc
from pm_plugin.wire.portmaster import (
    config_pb2,
    config_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)


@dataclass(frozen=True)
class Notification:
    """A notification the plugin showed: its id, title, message and (id, text) actions."""

    event_id: str
    title: str
    message: str
    actions: tuple[tuple[str, str], ...]


@dataclass
class _Watch:
    keys: tuple[str, ...]
    sent: queue.SimpleQueue[list[tuple[str, config_pb2.Value]] | None] = field(
        default_factory=queue.SimpleQueue
    )


class Config(config_pb2_grpc.ConfigServiceServicer):
    """The plugin's options in memory; `set` reaches its open watches at once."""

    def __init__(self, name: str) -> None:
        self.prefix = f"plugins/{name}/"
        self.options: dict[str, config_pb2.Option] = {}
        self.values: dict[str, config_pb2.Value] = {}
        self._watches: list[_Watch] = []
        self._lock = threading.Lock()
        self.registered = threading.Condition(self._lock)

    def full(self, key: str) -> str:
        return key if key.startswith(self.prefix) else self.prefix + key

    def value(self, full: str) -> config_pb2.Value:
        with self._lock:
            if full not in self.options:
                raise KeyError(f"the plugin registered no config option {full}")
            return self.values.get(full, self.options[full].default)

    def set(self, full: str, value: config_pb2.Value | None) -> int:
        """Set (None: reset) and send the watched values to every watch naming `full`;
        returns how many watches it reached."""
        with self._lock:
            if full not in self.options:
                raise KeyError(f"the plugin registered no config option {full}")
            if value is None:
                self.values.pop(full, None)
            else:
                self.values[full] = value
            reached = [w for w in self._watches if full in w.keys]
            for watch in reached:
                watch.sent.put(
                    [(k, self.values.get(k, self.options[k].default)) for k in watch.keys]
                )
        return len(reached)

    def watched(self) -> list[str]:
        with self._lock:
            return sorted({k for w in self._watches for k in w.keys})

    def close(self) -> None:
        with self._lock:
            for watch in self._watches:
                watch.sent.put(None)

    def RegisterOption(
        self, request: config_pb2.RegisterRequest, context: grpc.ServicerContext
    ) -> config_pb2.RegisterResponse:
        key = request.option.key
        if not key or key.startswith(("/", "plugins/")) or ".." in key.split("/"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{key!r} is not a relative key")
        with self.registered:
            self.options[self.prefix + key] = request.option
            self.registered.notify_all()
        return config_pb2.RegisterResponse()

    def GetValue(
        self, request: config_pb2.GetValueRequest, context: grpc.ServicerContext
    ) -> config_pb2.GetValueResponse:
        try:
            return config_pb2.GetValueResponse(value=self.value(self.full(request.key)))
        except KeyError as err:
            context.abort(grpc.StatusCode.NOT_FOUND, str(err.args[0]))

    def WatchValues(
        self, request: config_pb2.WatchChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[config_pb2.WatchChangesResponse]:
        watch = _Watch(tuple(self.full(k) for k in request.keys))
        with self._lock:
            unknown = [k for k in watch.keys if k not in self.options]
            if unknown:
                context.abort(grpc.StatusCode.NOT_FOUND, f"{unknown[0]} is not registered")
            self._watches.append(watch)
        context.add_callback(lambda: watch.sent.put(None))
        try:
            while (snapshot := watch.sent.get()) is not None:
                for key, value in snapshot:
                    yield config_pb2.WatchChangesResponse(key=key, value=value)
        finally:
            with self._lock:
                self._watches.remove(watch)


class Notifications(notification_pb2_grpc.NotificationServiceServicer):
    """Notifications the plugin showed; each with actions waits for `answer`."""

    def __init__(self) -> None:
        self.shown: list[Notification] = []
        self._answers: dict[str, queue.SimpleQueue[str | None]] = {}
        self._lock = threading.Condition()

    def answer(self, event_id: str, action: str | None) -> None:
        with self._lock:
            waiting = self._answers.pop(event_id, None)
        if waiting is None:
            raise KeyError(f"no notification {event_id} waits for an answer")
        waiting.put(action)

    def close(self) -> None:
        with self._lock:
            waiting, self._answers = list(self._answers.values()), {}
        for answer in waiting:
            answer.put(None)

    def CreateNotification(
        self, request: notification_pb2.CreateNotificationRequest, context: grpc.ServicerContext
    ) -> Iterator[notification_pb2.CreateNotificationResponse]:
        n = request.notification
        event_id = n.event_id or f"notification-{len(self.shown) + 1}"
        shown = Notification(event_id, n.title, n.message, tuple((a.id, a.text) for a in n.actions))
        answer: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        with self._lock:
            self.shown.append(shown)
            if shown.actions:
                self._answers[event_id] = answer
            self._lock.notify_all()
        if not shown.actions:
            return
        context.add_callback(lambda: answer.put(None))
        chosen = answer.get()
        if chosen is not None:
            yield notification_pb2.CreateNotificationResponse(selected_action_id=chosen)

    def wait(self, count: int, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self.shown) >= count, timeout)


class DecisionCache(extensions_pb2_grpc.DecisionCacheServiceServicer):
    """Counts the plugin's requests to forget its cached verdicts."""

    def __init__(self) -> None:
        self.forgotten = 0

    def ForgetCachedVerdicts(
        self, request: extensions_pb2.ForgetCachedVerdictsRequest, context: grpc.ServicerContext
    ) -> extensions_pb2.ForgetCachedVerdictsResponse:
        self.forgotten += 1
        return extensions_pb2.ForgetCachedVerdictsResponse()
