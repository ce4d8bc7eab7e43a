from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PluginType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_TYPE_UNKNOWN: _ClassVar[PluginType]
    PLUGIN_TYPE_BASE: _ClassVar[PluginType]
    PLUGIN_TYPE_DECIDER: _ClassVar[PluginType]
    PLUGIN_TYPE_REPORTER: _ClassVar[PluginType]
    PLUGIN_TYPE_RESOLVER: _ClassVar[PluginType]
PLUGIN_TYPE_UNKNOWN: PluginType
PLUGIN_TYPE_BASE: PluginType
PLUGIN_TYPE_DECIDER: PluginType
PLUGIN_TYPE_REPORTER: PluginType
PLUGIN_TYPE_RESOLVER: PluginType

class PluginError(_message.Message):
    __slots__ = ("time", "error")
    TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    time: int
    error: str
    def __init__(self, time: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class PluginConfig(_message.Message):
    __slots__ = ("name", "plugin_types", "privileged", "static_config", "disable_autostart")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_TYPES_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    STATIC_CONFIG_FIELD_NUMBER: _ClassVar[int]
    DISABLE_AUTOSTART_FIELD_NUMBER: _ClassVar[int]
    name: str
    plugin_types: _containers.RepeatedScalarFieldContainer[PluginType]
    privileged: bool
    static_config: bytes
    disable_autostart: bool
    def __init__(self, name: _Optional[str] = ..., plugin_types: _Optional[_Iterable[_Union[PluginType, str]]] = ..., privileged: _Optional[bool] = ..., static_config: _Optional[bytes] = ..., disable_autostart: _Optional[bool] = ...) -> None: ...

class PluginErrorList(_message.Message):
    __slots__ = ("base_errors", "decider_errors", "reporter_errors", "resolver_errors")
    BASE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    DECIDER_ERRORS_FIELD_NUMBER: _ClassVar[int]
    REPORTER_ERRORS_FIELD_NUMBER: _ClassVar[int]
    RESOLVER_ERRORS_FIELD_NUMBER: _ClassVar[int]
    base_errors: _containers.RepeatedCompositeFieldContainer[PluginError]
    decider_errors: _containers.RepeatedCompositeFieldContainer[PluginError]
    reporter_errors: _containers.RepeatedCompositeFieldContainer[PluginError]
    resolver_errors: _containers.RepeatedCompositeFieldContainer[PluginError]
    def __init__(self, base_errors: _Optional[_Iterable[_Union[PluginError, _Mapping]]] = ..., decider_errors: _Optional[_Iterable[_Union[PluginError, _Mapping]]] = ..., reporter_errors: _Optional[_Iterable[_Union[PluginError, _Mapping]]] = ..., resolver_errors: _Optional[_Iterable[_Union[PluginError, _Mapping]]] = ...) -> None: ...

class PluginInstance(_message.Message):
    __slots__ = ("errors",)
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    errors: PluginErrorList
    def __init__(self, errors: _Optional[_Union[PluginErrorList, _Mapping]] = ...) -> None: ...

class Plugin(_message.Message):
    __slots__ = ("config", "instance")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    config: PluginConfig
    instance: PluginInstance
    def __init__(self, config: _Optional[_Union[PluginConfig, _Mapping]] = ..., instance: _Optional[_Union[PluginInstance, _Mapping]] = ...) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("plugins",)
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    plugins: _containers.RepeatedCompositeFieldContainer[Plugin]
    def __init__(self, plugins: _Optional[_Iterable[_Union[Plugin, _Mapping]]] = ...) -> None: ...

class RegisterPluginRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: PluginConfig
    def __init__(self, config: _Optional[_Union[PluginConfig, _Mapping]] = ...) -> None: ...

class RegisterPluginResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnregisterPluginRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnregisterPluginResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopPluginRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StopPluginResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartPluginRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StartPluginResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
