from pm_plugin.wire.portmaster import network_pb2 as _network_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DNSQuestion(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CLASS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: int
    def __init__(self, name: _Optional[str] = ..., type: _Optional[int] = ..., **kwargs) -> None: ...

class DNSRR(_message.Message):
    __slots__ = ("name", "type", "ttl", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CLASS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: int
    ttl: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., type: _Optional[int] = ..., ttl: _Optional[int] = ..., data: _Optional[bytes] = ..., **kwargs) -> None: ...

class DNSResponse(_message.Message):
    __slots__ = ("rcode", "rrs")
    RCODE_FIELD_NUMBER: _ClassVar[int]
    RRS_FIELD_NUMBER: _ClassVar[int]
    rcode: int
    rrs: _containers.RepeatedCompositeFieldContainer[DNSRR]
    def __init__(self, rcode: _Optional[int] = ..., rrs: _Optional[_Iterable[_Union[DNSRR, _Mapping]]] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("question", "connection")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    question: DNSQuestion
    connection: _network_pb2.Connection
    def __init__(self, question: _Optional[_Union[DNSQuestion, _Mapping]] = ..., connection: _Optional[_Union[_network_pb2.Connection, _Mapping]] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: DNSResponse
    def __init__(self, response: _Optional[_Union[DNSResponse, _Mapping]] = ...) -> None: ...
