from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NotificationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_TYPE_INFO: _ClassVar[NotificationType]
    NOTIFICATION_TYPE_WARNING: _ClassVar[NotificationType]
    NOTIFICATION_TYPE_PROMPT: _ClassVar[NotificationType]
    NOTIFICATION_TYPE_ERROR: _ClassVar[NotificationType]

class NotificationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_STATE_UNKNOWN: _ClassVar[NotificationState]
    NOTIFICATION_STATE_ACTIVE: _ClassVar[NotificationState]
    NOTIFICATION_STATE_RESPONDED: _ClassVar[NotificationState]
    NOTIFICATION_STATE_EXECUTED: _ClassVar[NotificationState]

class WebhookResultAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_RESULT_ACTION_IGNORE: _ClassVar[WebhookResultAction]
    WEBHOOK_RESULT_ACTION_DISPLAY: _ClassVar[WebhookResultAction]
NOTIFICATION_TYPE_INFO: NotificationType
NOTIFICATION_TYPE_WARNING: NotificationType
NOTIFICATION_TYPE_PROMPT: NotificationType
NOTIFICATION_TYPE_ERROR: NotificationType
NOTIFICATION_STATE_UNKNOWN: NotificationState
NOTIFICATION_STATE_ACTIVE: NotificationState
NOTIFICATION_STATE_RESPONDED: NotificationState
NOTIFICATION_STATE_EXECUTED: NotificationState
WEBHOOK_RESULT_ACTION_IGNORE: WebhookResultAction
WEBHOOK_RESULT_ACTION_DISPLAY: WebhookResultAction

class NotificationAction(_message.Message):
    __slots__ = ("id", "text", "open_url", "open_page", "open_setting", "open_profile", "inject_event_id", "webhook")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OPEN_URL_FIELD_NUMBER: _ClassVar[int]
    OPEN_PAGE_FIELD_NUMBER: _ClassVar[int]
    OPEN_SETTING_FIELD_NUMBER: _ClassVar[int]
    OPEN_PROFILE_FIELD_NUMBER: _ClassVar[int]
    INJECT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    open_url: str
    open_page: str
    open_setting: OpenSettingPayload
    open_profile: str
    inject_event_id: str
    webhook: CallWebhookPayload
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., open_url: _Optional[str] = ..., open_page: _Optional[str] = ..., open_setting: _Optional[_Union[OpenSettingPayload, _Mapping]] = ..., open_profile: _Optional[str] = ..., inject_event_id: _Optional[str] = ..., webhook: _Optional[_Union[CallWebhookPayload, _Mapping]] = ...) -> None: ...

class CallWebhookPayload(_message.Message):
    __slots__ = ("method", "url", "payload", "result_action")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESULT_ACTION_FIELD_NUMBER: _ClassVar[int]
    method: str
    url: str
    payload: str
    result_action: WebhookResultAction
    def __init__(self, method: _Optional[str] = ..., url: _Optional[str] = ..., payload: _Optional[str] = ..., result_action: _Optional[_Union[WebhookResultAction, str]] = ...) -> None: ...

class OpenSettingPayload(_message.Message):
    __slots__ = ("key", "profile")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    key: str
    profile: str
    def __init__(self, key: _Optional[str] = ..., profile: _Optional[str] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("event_id", "guid", "type", "title", "category", "message", "show_on_system", "expires", "state", "actions")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SHOW_ON_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    guid: str
    type: NotificationType
    title: str
    category: str
    message: str
    show_on_system: bool
    expires: int
    state: NotificationState
    actions: _containers.RepeatedCompositeFieldContainer[NotificationAction]
    def __init__(self, event_id: _Optional[str] = ..., guid: _Optional[str] = ..., type: _Optional[_Union[NotificationType, str]] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., message: _Optional[str] = ..., show_on_system: _Optional[bool] = ..., expires: _Optional[int] = ..., state: _Optional[_Union[NotificationState, str]] = ..., actions: _Optional[_Iterable[_Union[NotificationAction, _Mapping]]] = ...) -> None: ...

class CreateNotificationRequest(_message.Message):
    __slots__ = ("notification",)
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    notification: Notification
    def __init__(self, notification: _Optional[_Union[Notification, _Mapping]] = ...) -> None: ...

class CreateNotificationResponse(_message.Message):
    __slots__ = ("selected_action_id",)
    SELECTED_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    selected_action_id: str
    def __init__(self, selected_action_id: _Optional[str] = ...) -> None: ...

class ResolveNotificationRequest(_message.Message):
    __slots__ = ("event_id", "selected_action_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SELECTED_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    selected_action_id: str
    def __init__(self, event_id: _Optional[str] = ..., selected_action_id: _Optional[str] = ...) -> None: ...

class ResolveNotificationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchNotificationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchNotificationsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
