"""A plugin's configuration as the user changes it outside the running host: the static
config of its plugins.json entry, and forgetting everything on `uninstall --purge`.

Why this exists: the static config (the entry's `"config"`, handed to the plugin in
Configure) was reachable only by editing plugins.json by hand; `pm-plugins config static`
sets one key of it through the same journaled change every install makes. `uninstall` keeps
what a person chose for a plugin (its saved option values and its data folder) so a
reinstall finds them; `purge` is the explicit way to forget them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from typing import Any

from keys import strict_json
from keys.errors import StrictJSONError
from loader.config_values import forget_plugin
from loader.home import Home
from loader.journal import changing, commit
from loader.lockfile import dumps_lock, read_lock
from loader.plugins_json import dumps_plugins_json, read_plugins_json
from registry_client.reading import InstallError

__all__ = ["purge", "set_static"]


def set_static(
    home: Home, name: str, key: str, value: Any = None, *, unset: bool = False
) -> dict[str, Any]:
    """Set `key` of plugin `name`'s static config to `value` (JSON null included), or with
    `unset` remove it; returns the new config. The plugin reads it at its next start."""
    if not key:
        raise InstallError("a static config key cannot be empty")
    with changing(home):
        entries = read_plugins_json(home.plugins_json)
        i = next((i for i, e in enumerate(entries) if e.name == name), -1)
        if i < 0:
            raise InstallError(f"plugin {name} is not in plugins.json")
        entry = entries[i]
        config = _as_object(name, entry.config)
        if unset:
            if key not in config:
                raise InstallError(f"the static config of {name} has no key {key}")
            del config[key]
        else:
            config[key] = value
        raw = json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()
        entries[i] = dataclasses.replace(entry, config=raw if config else b"")
        commit(home, dumps_plugins_json(entries), dumps_lock(read_lock(home.lock_file)))
        return config


def _as_object(name: str, raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        config = strict_json.loads(raw, source=f"the config of {name}")
    except StrictJSONError as err:
        raise InstallError(str(err)) from err
    if not isinstance(config, dict):
        raise InstallError(
            f"the static config of {name} is not a JSON object, so it has no keys to set; "
            f"edit plugins.json instead"
        )
    return config


def purge(home: Home, name: str) -> list[str]:
    """Forget what was kept for an uninstalled plugin: its saved option values and its data
    folder. Returns what was removed, as words for the user."""
    removed = [f"config value {key}" for key in forget_plugin(home.config_values, name)]
    data = home.data_dir / name
    if data.is_symlink():
        data.unlink()
        removed.append(f"data folder {data}")
    elif data.is_dir():
        shutil.rmtree(data)
        removed.append(f"data folder {data}")
    return removed
