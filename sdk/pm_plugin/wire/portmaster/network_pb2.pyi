from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNDECIDED: _ClassVar[Verdict]
    VERDICT_UNDETERMINABLE: _ClassVar[Verdict]
    VERDICT_ACCEPT: _ClassVar[Verdict]
    VERDICT_BLOCK: _ClassVar[Verdict]
    VERDICT_DROP: _ClassVar[Verdict]
    VERDICT_REROUTE_TO_NS: _ClassVar[Verdict]
    VERDICT_REROUTE_TO_TUNNEL: _ClassVar[Verdict]
    VERDICT_FAILED: _ClassVar[Verdict]

class ConnectionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTION_TYPE_UNKNOWN: _ClassVar[ConnectionType]
    CONNECTION_TYPE_IP: _ClassVar[ConnectionType]
    CONNECTION_TYPE_DNS: _ClassVar[ConnectionType]

class IPVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IP_VERSION_UNKNOWN: _ClassVar[IPVersion]
    IP_VERSION_4: _ClassVar[IPVersion]
    IP_VERSION_6: _ClassVar[IPVersion]

class IPScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IP_SCOPE_UNKNOWN: _ClassVar[IPScope]
    IP_SCOPE_HOST_LOCAL: _ClassVar[IPScope]
    IP_SCOPE_LINK_LOCAL: _ClassVar[IPScope]
    IP_SCOPE_SITE_LOCAL: _ClassVar[IPScope]
    IP_SCOPE_GLOBAL: _ClassVar[IPScope]
    IP_SCOPE_LOCAL_MULTICAST: _ClassVar[IPScope]
    IP_SCOPE_GLOBAL_MULTICAST: _ClassVar[IPScope]
VERDICT_UNDECIDED: Verdict
VERDICT_UNDETERMINABLE: Verdict
VERDICT_ACCEPT: Verdict
VERDICT_BLOCK: Verdict
VERDICT_DROP: Verdict
VERDICT_REROUTE_TO_NS: Verdict
VERDICT_REROUTE_TO_TUNNEL: Verdict
VERDICT_FAILED: Verdict
CONNECTION_TYPE_UNKNOWN: ConnectionType
CONNECTION_TYPE_IP: ConnectionType
CONNECTION_TYPE_DNS: ConnectionType
IP_VERSION_UNKNOWN: IPVersion
IP_VERSION_4: IPVersion
IP_VERSION_6: IPVersion
IP_SCOPE_UNKNOWN: IPScope
IP_SCOPE_HOST_LOCAL: IPScope
IP_SCOPE_LINK_LOCAL: IPScope
IP_SCOPE_SITE_LOCAL: IPScope
IP_SCOPE_GLOBAL: IPScope
IP_SCOPE_LOCAL_MULTICAST: IPScope
IP_SCOPE_GLOBAL_MULTICAST: IPScope

class Coordinates(_message.Message):
    __slots__ = ("accuracy_radius", "latitude", "longitude")
    ACCURACY_RADIUS_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    accuracy_radius: int
    latitude: float
    longitude: float
    def __init__(self, accuracy_radius: _Optional[int] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class IntelEntity(_message.Message):
    __slots__ = ("protocol", "port", "domain", "reverse_domain", "cnames", "ip", "scope", "country", "coordinates", "asn", "as_owner")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    REVERSE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CNAMES_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    ASN_FIELD_NUMBER: _ClassVar[int]
    AS_OWNER_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    port: int
    domain: str
    reverse_domain: str
    cnames: _containers.RepeatedScalarFieldContainer[str]
    ip: str
    scope: IPScope
    country: str
    coordinates: Coordinates
    asn: int
    as_owner: str
    def __init__(self, protocol: _Optional[int] = ..., port: _Optional[int] = ..., domain: _Optional[str] = ..., reverse_domain: _Optional[str] = ..., cnames: _Optional[_Iterable[str]] = ..., ip: _Optional[str] = ..., scope: _Optional[_Union[IPScope, str]] = ..., country: _Optional[str] = ..., coordinates: _Optional[_Union[Coordinates, _Mapping]] = ..., asn: _Optional[int] = ..., as_owner: _Optional[str] = ...) -> None: ...

class ProcessContext(_message.Message):
    __slots__ = ("name", "profile", "binary_path", "command_line", "process_id", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    BINARY_PATH_FIELD_NUMBER: _ClassVar[int]
    COMMAND_LINE_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile: str
    binary_path: str
    command_line: str
    process_id: int
    source: str
    def __init__(self, name: _Optional[str] = ..., profile: _Optional[str] = ..., binary_path: _Optional[str] = ..., command_line: _Optional[str] = ..., process_id: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class Connection(_message.Message):
    __slots__ = ("id", "type", "external", "ip_version", "inbound", "ip_protocol", "local_ip", "local_port", "entity", "started", "tunneled", "process", "verdict")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    IP_VERSION_FIELD_NUMBER: _ClassVar[int]
    INBOUND_FIELD_NUMBER: _ClassVar[int]
    IP_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    LOCAL_IP_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PORT_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    TUNNELED_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: ConnectionType
    external: bool
    ip_version: IPVersion
    inbound: bool
    ip_protocol: int
    local_ip: str
    local_port: int
    entity: IntelEntity
    started: int
    tunneled: bool
    process: ProcessContext
    verdict: Verdict
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[ConnectionType, str]] = ..., external: _Optional[bool] = ..., ip_version: _Optional[_Union[IPVersion, str]] = ..., inbound: _Optional[bool] = ..., ip_protocol: _Optional[int] = ..., local_ip: _Optional[str] = ..., local_port: _Optional[int] = ..., entity: _Optional[_Union[IntelEntity, _Mapping]] = ..., started: _Optional[int] = ..., tunneled: _Optional[bool] = ..., process: _Optional[_Union[ProcessContext, _Mapping]] = ..., verdict: _Optional[_Union[Verdict, str]] = ...) -> None: ...
