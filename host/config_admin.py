"""The person's side of the plugins' config: list, get, set and reset options, kept across
restarts.

Why this exists: plugins register options and read them over the config service
(`host.services.config`); nothing there lets a person reach them. `ConfigAdmin` sits beside
the running host's `ConfigStore`: it shows every registered option as plain JSON with its
type, checks a new value against the type the option declares, sets it (the plugin's watch
fires at once) and records it in `config.json` (`loader.config_values`), from which a
restarted host gives each option its saved value as the plugin registers it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host.services.config import ConfigStore
from loader.config_values import (
    ConfigValuesError,
    SavedValue,
    check_plain,
    read_values,
    save_value,
)
from pm_plugin.host import plain, to_value
from pm_plugin.wire.portmaster import config_pb2

log = logging.getLogger("pm_plugins.config")

_TYPE_NAMES = {
    config_pb2.OPTION_TYPE_STRING: "string",
    config_pb2.OPTION_TYPE_STRING_ARRAY: "string_array",
    config_pb2.OPTION_TYPE_INT: "int",
    config_pb2.OPTION_TYPE_BOOL: "bool",
}


def type_name(option: config_pb2.Option) -> str:
    """The option's declared type as config.json and the CLI name it ("any" when undeclared)."""
    return _TYPE_NAMES.get(option.option_type, "any")


def to_plain(value: config_pb2.Value, type_: str) -> Any:
    """The plain JSON of a wire value read as `type_`."""
    if type_ == "string":
        return value.string
    if type_ == "string_array":
        return list(value.string_array)
    if type_ == "int":
        return value.int
    if type_ == "bool":
        return value.bool
    return plain(value)  # "any": its most specific value


class ConfigAdmin:
    """What a person can do with the registered options of one running host."""

    def __init__(
        self,
        store: ConfigStore,
        saved_path: Path,
        signers_of: Callable[[str], tuple[str, ...]] = lambda owner: (),
    ) -> None:
        self._store = store
        self._path = saved_path
        self._signers_of = signers_of  # the key ids that signed a plugin's running release
        try:
            self._saved = read_values(saved_path)
        except ConfigValuesError as err:
            log.warning("saved config values are not used: %s", err)
            self._saved = {}
        store.use_initial_values(self._initial)

    def _initial(self, key: str, option: config_pb2.Option) -> config_pb2.Value | None:
        saved = self._saved.get(key)
        if saved is None:
            return None
        if saved.type != type_name(option):
            log.warning(
                "the saved value of %s is a %s, but the option is now a %s; its default applies",
                key, saved.type, type_name(option),
            )  # fmt: skip
            return None
        owner = key.split("/")[1] if key.startswith("plugins/") else ""
        if owner and not saved.fits(self._signers_of(owner)):
            log.warning(
                "the saved value of %s was set for a release of %s signed by other keys; "
                "its default applies", key, owner,
            )  # fmt: skip
            return None
        return to_value(saved.value)

    def options(self) -> list[dict[str, Any]]:
        """Every registered option: key, plugin, name, description, help, type, default,
        value (the effective one) and whether a value is set."""
        return [self._shown(o, owner, v) for o, owner, v in self._store.options()]

    def option(self, key: str) -> dict[str, Any]:
        """One option by full key, or by `<plugin>/<key>` for `plugins/<plugin>/<key>`."""
        full = self.resolve(key)
        for option, owner, value in self._store.options():
            if option.key == full:
                return self._shown(option, owner, value)
        raise LookupError(f"no running plugin registered a config option {key}")

    def resolve(self, key: str) -> str:
        """The full key `key` names; LookupError when no registered option has it."""
        keys = set(self._store.registered_keys())
        # A key naming `plugins/...` is a full key only: as a short key it would reach the
        # plugin called "plugins" (plugins/plugins/...), which may have squatted on it.
        short: tuple[str, ...] = () if key.startswith("plugins/") else (f"plugins/{key}",)
        for full in (key, *short):
            if full in keys:
                return full
        raise LookupError(
            f"no running plugin registered a config option {key}; `pm-plugins config` lists them"
        )

    def set(self, key: str, plain: Any) -> dict[str, Any]:
        """Check `plain` against the option's type, set it, save it; returns the option."""
        current = self.option(key)
        full, type_ = current["key"], current["type"]
        try:
            check_plain(plain, type_, full)
        except ConfigValuesError as err:
            raise ValueError(str(err)) from err
        owner = current["plugin"]
        saved = SavedValue(
            type_, plain, self._signers_of(owner) if full.startswith("plugins/") else ()
        )
        save_value(self._path, full, saved)
        self._saved[full] = saved
        self._store.set(full, to_value(plain))
        log.info("config %s set by the host's user", full)
        return self.option(full)

    def reset(self, key: str) -> dict[str, Any]:
        """Forget the value set for an option, so its default applies again."""
        full = self.option(key)["key"]
        save_value(self._path, full, None)
        self._saved.pop(full, None)
        self._store.set(full, None)
        return self.option(full)

    @staticmethod
    def _shown(
        option: config_pb2.Option, owner: str, value: config_pb2.Value | None
    ) -> dict[str, Any]:
        type_ = type_name(option)
        default = to_plain(option.default, type_)
        return {
            "key": option.key,
            "plugin": owner,
            "name": option.name,
            "description": option.description,
            "help": option.help,
            "type": type_,
            "default": default,
            "value": default if value is None else to_plain(value, type_),
            "set": value is not None,
        }
