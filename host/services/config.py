"""The config service a plugin calls back into, and the host's whole configuration behind it.

Why this exists: `ConfigStore` holds every plugin's options (and the host's own) in memory, and
`ConfigServicer` serves `ConfigService` to one plugin through the identity the host gave its
backchannel. The key rules live here: an unprivileged plugin's config key must be a plain
relative key inside its own namespace `plugins/<name>/`, and anything else is refused with
PERMISSION_DENIED naming the key (the PR's host rewrites it silently).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import grpc

from host.services.common import (
    _SEGMENT,
    HOST_OWNER,
    LimitError,
    _check_plugin_name,
    _exception_text,
    _quote,
)
from pm_plugin.wire.portmaster import config_pb2, config_pb2_grpc

__all__ = ["ConfigServicer", "ConfigStore", "Subscription"]

#: Longest config key a plugin may name, so refusals and lookups stay small.
MAX_KEY_LENGTH = 256
#: What one plugin can make the host hold: registered options (count, and serialized bytes
#: of their definitions) and open watches. The host's own options are not counted.
MAX_OPTIONS_PER_PLUGIN = 256
MAX_OPTION_BYTES_PER_PLUGIN = 1 << 20
MAX_WATCHES_PER_PLUGIN = 8
#: Keys one watch may name (checked before any key is built).
MAX_KEYS_PER_WATCH = MAX_OPTIONS_PER_PLUGIN

#: A plain relative key. No segment may start with ".", so "." and ".." segments cannot occur.
_RELATIVE_KEY_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")


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


def _copy_option(option: config_pb2.Option) -> config_pb2.Option:
    copied = config_pb2.Option()
    copied.CopyFrom(option)
    return copied


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

    def __init__(
        self, store: ConfigStore, full_keys: tuple[str, ...], owner: str = HOST_OWNER
    ) -> None:
        self.keys = full_keys
        self.owner = owner
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
    Listeners (`add_listener`) hear every change of an effective value, after the watchers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[str, str], None]] = []
        self._initial: Callable[[str, config_pb2.Option], config_pb2.Value | None] | None = None

    def use_initial_values(
        self, initial: Callable[[str, config_pb2.Option], config_pb2.Value | None]
    ) -> None:
        """Ask `initial(full_key, option)` for the value of each newly registered option (the
        values a person saved before a restart); None keeps the option's default."""
        with self._lock:
            self._initial = initial

    def add_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(owner, full_key)` after each change of a key's effective value, on
        the changing thread, outside the store's lock. The runtime clears its decision cache
        here: a decider's cached answers may depend on any value it can read."""
        with self._lock:
            self._listeners.append(listener)

    def register_option(self, full_key: str, option: config_pb2.Option, owner: str) -> None:
        """Register (or, by the same owner, re-register) an option under `full_key`.

        A value already set is kept unless the option's type changed. Raises ValueError if
        another owner holds the key, and LimitError (a ValueError) when a plugin would hold
        more options or option bytes than its bound.
        """
        if not full_key:
            raise ValueError("a config option needs a non-empty key")
        stored = config_pb2.Option()
        stored.CopyFrom(option)
        stored.key = full_key
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is not None and entry.owner != owner:
                raise ValueError(
                    f"config key {_quote(full_key)} is already registered by {_quote(entry.owner)}"
                )
            self._check_option_bounds(owner, stored, entry)
            if entry is None:
                saved = self._initial(full_key, stored) if self._initial else None
                self._entries[full_key] = _Entry(stored, owner, saved)
                return
            before = entry.effective()
            if entry.option.option_type != stored.option_type:
                entry.value = None  # a value set for the old type is not one of the new
            entry.option = stored
            changed = entry.effective() != before
            if changed:
                self._notify_locked(full_key)
        if changed:
            self._tell_listeners(owner, full_key)

    def _check_option_bounds(
        self, owner: str, stored: config_pb2.Option, replacing: _Entry | None
    ) -> None:
        if owner == HOST_OWNER:
            return
        mine = [e for e in self._entries.values() if e.owner == owner and e is not replacing]
        if replacing is None and len(mine) >= MAX_OPTIONS_PER_PLUGIN:
            raise LimitError(
                f"plugin {_quote(owner)} already registered {len(mine)} config options, the"
                f" most one plugin may hold ({MAX_OPTIONS_PER_PLUGIN})"
            )
        held = sum(e.option.ByteSize() for e in mine) + stored.ByteSize()
        if held > MAX_OPTION_BYTES_PER_PLUGIN:
            raise LimitError(
                f"plugin {_quote(owner)} would hold {held} bytes of config option definitions,"
                f" more than one plugin may ({MAX_OPTION_BYTES_PER_PLUGIN})"
            )

    def get(self, full_key: str) -> config_pb2.Value:
        """The value set for `full_key`, else its default (a copy). KeyError if unknown."""
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is None:
                raise KeyError(full_key)
            return entry.effective()

    def set(self, full_key: str, value: config_pb2.Value | None) -> None:
        """Set the value of a registered option (None: back to its default) and notify its
        watchers. KeyError if unknown."""
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is None:
                raise KeyError(full_key)
            entry.value = None if value is None else _copy_value(value)
            self._notify_locked(full_key)
            owner = entry.owner
        self._tell_listeners(owner, full_key)

    def subscribe(self, full_keys: Iterable[str], owner: str = HOST_OWNER) -> Subscription:
        """Watch these registered keys (duplicates dropped). KeyError names an unknown one;
        LimitError when plugin `owner` already holds its most open watches."""
        keys = tuple(dict.fromkeys(full_keys))
        with self._lock:
            for key in keys:
                if key not in self._entries:
                    raise KeyError(key)
            open_watches = sum(1 for s in self._subscriptions if s.owner == owner)
            if owner != HOST_OWNER and open_watches >= MAX_WATCHES_PER_PLUGIN:
                raise LimitError(
                    f"plugin {_quote(owner)} already holds {open_watches} open config watches,"
                    f" the most one plugin may; watch several keys in one call instead"
                )
            subscription = Subscription(self, keys, owner)
            self._subscriptions.add(subscription)
        return subscription

    def forget_owner(self, owner: str) -> None:
        """Drop every option `owner` registered (its plugin was unregistered or is reloaded):
        a plugin registering them again gets the saved values its signers may have."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.owner == owner]:
                del self._entries[key]

    def options(self) -> list[tuple[config_pb2.Option, str, config_pb2.Value | None]]:
        """Copies of every registered option with its owner and the value set (None: the
        default applies), sorted by key."""
        with self._lock:
            entries = sorted(self._entries.items())
            return [
                (_copy_option(e.option), e.owner, None if e.value is None else _copy_value(e.value))
                for _, e in entries
            ]

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
                    [
                        (key, self._entries[key].effective())
                        for key in subscription.keys
                        if key in self._entries  # an option whose plugin went away
                    ]
                )

    def _tell_listeners(self, owner: str, full_key: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(owner, full_key)

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
        except LimitError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _exception_text(exc))
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
        if len(request.keys) > MAX_KEYS_PER_WATCH:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"plugin {_quote(self._name)} asked to watch {len(request.keys)} keys in one"
                f" call, more than one watch may name ({MAX_KEYS_PER_WATCH})",
            )
        full_keys = [self._full_key(key, "watch", context) for key in request.keys]
        try:
            subscription = self._store.subscribe(full_keys, owner=self._name)
        except LimitError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _exception_text(exc))
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
