from pm_plugin.wire.portmaster import plugins_pb2 as _plugins_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConfigureRequest(_message.Message):
    __slots__ = ("base_directory", "config", "backchannel_id", "portmaster_version")
    BASE_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    BACKCHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    PORTMASTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    base_directory: str
    config: _plugins_pb2.PluginConfig
    backchannel_id: int
    portmaster_version: str
    def __init__(self, base_directory: _Optional[str] = ..., config: _Optional[_Union[_plugins_pb2.PluginConfig, _Mapping]] = ..., backchannel_id: _Optional[int] = ..., portmaster_version: _Optional[str] = ...) -> None: ...

class ConfigureResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
