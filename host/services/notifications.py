"""The notification service a plugin calls back into, and the host's notifications behind it.

Why this exists: `NotificationCenter` holds every plugin's pending and recently shown
notifications for the host's user to see and answer; `NotificationServicer` serves
`NotificationService` to one plugin, holding its stream open until the user picks one of its
custom actions or the plugin cancels.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import grpc

from host.services.common import LimitError, _check_plugin_name, _exception_text, _quote
from pm_plugin.wire.portmaster import notification_pb2, notification_pb2_grpc

__all__ = [
    "ActionChoice",
    "NotificationCenter",
    "NotificationServicer",
    "PendingNotification",
    "Prompt",
    "UnknownNotificationError",
]

#: What one plugin can make the host hold in notifications: text sizes, actions per
#: notification, and notifications waiting for an answer at once.
MAX_TITLE_CHARS = 256
MAX_MESSAGE_CHARS = 4096
MAX_ACTIONS = 8
MAX_PENDING_PER_PLUGIN = 8
MAX_EVENT_ID_CHARS = 256
MAX_NOTIFICATION_BYTES = 16 * 1024
#: Shown notifications (those needing no answer) the host keeps of one plugin, so that a
#: flooding plugin cannot push every other plugin's out of the list.
MAX_SHOWN_PER_PLUGIN = 16

_log = logging.getLogger(__name__)


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

    def dismiss(self, event_id: str) -> None:
        """Forget a shown notification (one that waits for no answer).

        Raises:
            UnknownNotificationError (a KeyError): no shown notification has that id.
        """
        with self._lock:
            found = next((n for n in self._shown if n.event_id == event_id), None)
            if found is None:
                waiting = (
                    " (it waits for an answer: answer it)" if event_id in self._prompts else ""
                )
                raise UnknownNotificationError(
                    f"no shown notification is called {_quote(event_id)}{waiting}"
                )
            self._shown.remove(found)

    def show(self, plugin: str, notification: notification_pb2.Notification) -> PendingNotification:
        """Record a notification that needs no answer (no custom action)."""
        info = self._describe(plugin, notification, needs_answer=False)
        with self._lock:
            mine = [shown for shown in self._shown if shown.plugin == plugin]
            if len(mine) >= MAX_SHOWN_PER_PLUGIN:
                self._shown.remove(mine[0])
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
            waiting = sum(1 for p in self._prompts.values() if p.info.plugin == plugin)
            if waiting >= MAX_PENDING_PER_PLUGIN:
                raise LimitError(
                    f"plugin {_quote(plugin)} already has {waiting} notifications waiting for an"
                    " answer, the most one plugin may"
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
        _check_size(plugin, notification)
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


def _check_size(plugin: str, notification: notification_pb2.Notification) -> None:
    """Refuse a notification larger than a person reads (and than the host should hold)."""
    too_big: list[str] = []
    if len(notification.event_id) > MAX_EVENT_ID_CHARS:
        too_big.append(f"an event id of {len(notification.event_id)} characters")
    size = notification.ByteSize()
    if size > MAX_NOTIFICATION_BYTES:
        too_big.append(f"{size} bytes (at most {MAX_NOTIFICATION_BYTES})")
    if len(notification.title) > MAX_TITLE_CHARS:
        too_big.append(
            f"a title of {len(notification.title)} characters (at most {MAX_TITLE_CHARS})"
        )
    if len(notification.message) > MAX_MESSAGE_CHARS:
        too_big.append(
            f"a message of {len(notification.message)} characters (at most {MAX_MESSAGE_CHARS})"
        )
    if len(notification.actions) > MAX_ACTIONS:
        too_big.append(f"{len(notification.actions)} actions (at most {MAX_ACTIONS})")
    if any(len(a.id) + len(a.text) > MAX_TITLE_CHARS for a in notification.actions):
        too_big.append(f"an action id or text over {MAX_TITLE_CHARS} characters")
    if too_big:
        raise LimitError(
            f"plugin {_quote(plugin)} sent a notification with {' and '.join(too_big)}"
        )


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
        try:
            if not _has_custom_action(notification):
                self._center.show(self._name, notification)
                return
            prompt = self._center.ask(self._name, notification)
        except LimitError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _exception_text(exc))
        except ValueError as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, _exception_text(exc))
        if not context.add_callback(prompt.withdraw):
            prompt.withdraw()
        selected = prompt.wait()
        if selected is not None:
            yield notification_pb2.CreateNotificationResponse(selected_action_id=selected)
