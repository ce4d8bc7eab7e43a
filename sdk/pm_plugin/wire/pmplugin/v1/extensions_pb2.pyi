from pm_plugin.wire.portmaster import network_pb2 as _network_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("streamed_decider", "hook_points", "streamed_reporter", "decision_socket")
    STREAMED_DECIDER_FIELD_NUMBER: _ClassVar[int]
    HOOK_POINTS_FIELD_NUMBER: _ClassVar[int]
    STREAMED_REPORTER_FIELD_NUMBER: _ClassVar[int]
    DECISION_SOCKET_FIELD_NUMBER: _ClassVar[int]
    streamed_decider: bool
    hook_points: _containers.RepeatedScalarFieldContainer[str]
    streamed_reporter: bool
    decision_socket: str
    def __init__(self, streamed_decider: _Optional[bool] = ..., hook_points: _Optional[_Iterable[str]] = ..., streamed_reporter: _Optional[bool] = ..., decision_socket: _Optional[str] = ...) -> None: ...

class DecisionRequest(_message.Message):
    __slots__ = ("id", "connection")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    id: int
    connection: _network_pb2.Connection
    def __init__(self, id: _Optional[int] = ..., connection: _Optional[_Union[_network_pb2.Connection, _Mapping]] = ...) -> None: ...

class DecisionBatch(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[DecisionRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[DecisionRequest, _Mapping]]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("id", "verdict", "reason", "cache_ttl_ms", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CACHE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    verdict: _network_pb2.Verdict
    reason: str
    cache_ttl_ms: int
    error: str
    def __init__(self, id: _Optional[int] = ..., verdict: _Optional[_Union[_network_pb2.Verdict, str]] = ..., reason: _Optional[str] = ..., cache_ttl_ms: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class VerdictBatch(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class ReportBatch(_message.Message):
    __slots__ = ("connections",)
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    connections: _containers.RepeatedCompositeFieldContainer[_network_pb2.Connection]
    def __init__(self, connections: _Optional[_Iterable[_Union[_network_pb2.Connection, _Mapping]]] = ...) -> None: ...

class ReportSummary(_message.Message):
    __slots__ = ("received", "failed")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    received: int
    failed: int
    def __init__(self, received: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class ForgetCachedVerdictsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ForgetCachedVerdictsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EntityMeta(_message.Message):
    __slots__ = ("display_name", "locked", "groups", "capabilities", "untyped_meta")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    UNTYPED_META_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    locked: bool
    groups: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    untyped_meta: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, display_name: _Optional[str] = ..., locked: _Optional[bool] = ..., groups: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., untyped_meta: _Optional[_Iterable[str]] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("id", "number", "meta")
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: int
    meta: EntityMeta
    def __init__(self, id: _Optional[str] = ..., number: _Optional[int] = ..., meta: _Optional[_Union[EntityMeta, _Mapping]] = ...) -> None: ...

class HookRequest(_message.Message):
    __slots__ = ("hook_point", "entity", "data_entity")
    HOOK_POINT_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    DATA_ENTITY_FIELD_NUMBER: _ClassVar[int]
    hook_point: str
    entity: Entity
    data_entity: Entity
    def __init__(self, hook_point: _Optional[str] = ..., entity: _Optional[_Union[Entity, _Mapping]] = ..., data_entity: _Optional[_Union[Entity, _Mapping]] = ...) -> None: ...

class HookResponse(_message.Message):
    __slots__ = ("entity",)
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    entity: Entity
    def __init__(self, entity: _Optional[_Union[Entity, _Mapping]] = ...) -> None: ...
