from pm_plugin.wire.portmaster import network_pb2 as _network_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecideOnConnectionRequest(_message.Message):
    __slots__ = ("connection",)
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    connection: _network_pb2.Connection
    def __init__(self, connection: _Optional[_Union[_network_pb2.Connection, _Mapping]] = ...) -> None: ...

class DecideOnConnectionResponse(_message.Message):
    __slots__ = ("verdict", "reason")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    verdict: _network_pb2.Verdict
    reason: str
    def __init__(self, verdict: _Optional[_Union[_network_pb2.Verdict, str]] = ..., reason: _Optional[str] = ...) -> None: ...
