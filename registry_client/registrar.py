"""Installing and removing plugins for a privileged plugin: the installer behind the plugin
manager's RegisterPlugin and UnregisterPlugin.

Why this exists: the host may not import `registry_client` (it runs plugins; installing is the
user's floor), yet a privileged plugin may ask a booted host to install a package or remove a
plugin it installed. `pm-plugins boot` builds a :class:`Registrar` and hands it to the
reference host, which calls it with a package the host has already copied out of the plugin's
data folder into a folder only the host can reach.

A registration is `pm-plugins install ./PKG` with nobody at a terminal:

- the package is read and verified with the installer's own check (`read_package`: signature,
  signature threshold, trust store as it is now, revocation, platform, SHA-256), so an
  unsigned package installs only in dev mode;
- the config's name must be the signed manifest's, its types may only narrow the manifest's,
  and `privileged` is refused unless the release earns it on its own (an official key, or
  unsigned in dev mode): only a person grants privilege (`pm-plugins grant`);
- a host module's name, a name already installed or configured, and anything that would need
  a person's yes (wider capabilities, a new signer, a downgrade) are refused, each with one
  sentence; then the installer's transactional `install_many` puts it in place;
- a second commit (under the state root's lock, as `pm-plugins grant` does) writes the
  plugins.json entry the request asked for (static config, types, privileged, autostart) and
  records `registered_by` in plugins.lock. A crash between the two commits leaves the plugin
  installed as `install ./PKG` would (default entry, unprivileged) and owned by nobody: the
  safe side. A person's later install or upgrade of that plugin makes it theirs (the
  installer writes a lock entry without `registered_by`).

Unregistering is `pm-plugins uninstall NAME` (refused while an installed plugin requires it),
allowed only for a plugin whose lock entry names the caller in `registered_by`.

Refusals are Python's own exception types, the vocabulary the host's plugin manager maps to
gRPC codes: PermissionError (verification, privilege, ownership, a host module's name),
ValueError (the request contradicts the package), RuntimeError (the state root's state:
already installed, needs a person, required by another plugin), LookupError (not installed).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from keys.errors import KeysError
from keys.store import TrustStore
from keys.strict_json import DEFAULT_MAX_BYTES
from loader.errors import LoaderError
from loader.home import Home
from loader.host_modules import CORE_MODULES
from loader.journal import changing, commit, reading
from loader.lockfile import dumps_lock, read_lock
from loader.plugins_json import PluginEntry, dumps_plugins_json, read_plugins_json
from registry_client.consent import CapabilityRefused
from registry_client.installer import install_many, read_package, uninstall
from registry_client.reading import InstallError, Release
from registry_client.replacing import Permission, ReplaceRefused

__all__ = ["MAX_CONFIG_PER_REGISTRAR", "MAX_PLUGINS_JSON_BYTES", "MAX_REGISTERED", "Registrar"]

#: The most installed plugins one plugin may have registered at a time.
MAX_REGISTERED = 32

#: The largest plugins.json a registration may leave: half of what the loader reads, so that
#: registrations can never make the file unreadable (which would boot no plugin at all).
MAX_PLUGINS_JSON_BYTES = DEFAULT_MAX_BYTES // 2
#: One registrar's share of that: the static config of all it registered, checked before an
#: install, so one plugin cannot fill what every registrar may use (eight such would).
MAX_CONFIG_PER_REGISTRAR = MAX_PLUGINS_JSON_BYTES // 8

_TERMINAL = "a plugin cannot answer for a person: run `pm-plugins install` from a terminal instead"


class Registrar:
    """Install (`install`) and remove (`uninstall`) plugins on behalf of privileged plugins."""

    def __init__(self, home: Home, *, dev_mode: bool, threshold: int = 1) -> None:
        self.home = home
        self.dev_mode = dev_mode
        self.threshold = threshold

    def install(self, registrar: str, package: Path, entry: PluginEntry) -> str:
        """Install the package at `package` (a host-only copy) as `entry` asks, recorded as
        registered by plugin `registrar`; returns the installed version."""
        name = entry.name
        if name in CORE_MODULES:
            raise PermissionError(f"refusing to register {name}: it has the name of a host module")
        release = self._verified(package, name)
        _check_request(release, entry, dev_mode=self.dev_mode)
        self._refuse_taken(registrar, name, len(entry.config))
        try:
            (result,) = install_many(self.home, [release], consent=None, allowed=Permission())
        except (CapabilityRefused, ReplaceRefused) as err:
            raise RuntimeError(f"{err}; {_TERMINAL}") from err
        except (InstallError, LoaderError, OSError) as err:
            raise RuntimeError(f"refusing to register {name}: {err}") from err
        if result.replaced is not None or result.unchanged:  # a person installed it meanwhile
            raise RuntimeError(
                f"plugin {name} was installed by someone else while {registrar} registered it; "
                f"it stays theirs"
            )
        try:
            self._record(registrar, entry, release)
        except BaseException:
            with contextlib.suppress(Exception):  # nothing of this registration remains
                uninstall(self.home, name, force=True)
            raise
        return release.version

    def uninstall(self, registrar: str, name: str) -> str:
        """Remove plugin `name`, which `registrar` must have registered; returns its version."""
        if name in CORE_MODULES:
            raise PermissionError(f"refusing to unregister {name}: it is a host module")
        with reading(self.home):
            locked = read_lock(self.home.lock_file).get(name)
        if locked is None:
            raise LookupError(f"plugin {name} is not installed")
        if locked.registered_by != registrar:
            raise PermissionError(_not_theirs(registrar, name, locked.registered_by))
        try:
            return uninstall(self.home, name)
        except (InstallError, LoaderError, OSError) as err:  # e.g. an installed plugin needs it
            shown = str(err).replace(" or pass --force", "")  # no flag for a plugin to pass
            raise RuntimeError(f"refusing to unregister {name}: {shown}") from err

    # -- steps --------------------------------------------------------------------------------

    def _verified(self, package: Path, name: str) -> Release:
        try:
            trust = TrustStore.load(self.home.trust_store)
        except KeysError as err:
            raise RuntimeError(f"refusing to register {name}: {err}") from err
        try:
            return read_package(
                package, trust=trust, dev_mode=self.dev_mode, threshold=self.threshold
            )
        except InstallError as err:  # unsigned, untrusted, revoked, modified, malformed
            # the installer names the host's copy, which means nothing to the plugin
            shown = str(err).replace(str(package), f"register/{name}")
            shown = shown.removeprefix("refusing to install ")
            raise PermissionError(f"refusing to register {name}: {shown}") from err

    def _refuse_taken(self, registrar: str, name: str, config_bytes: int = 0) -> None:
        """Refuse, before anything is installed, a name already taken, a registrar at its
        count, or one whose registrations' static config would pass its own share."""
        with reading(self.home):
            locked = read_lock(self.home.lock_file)
            entries = read_plugins_json(self.home.plugins_json)
            configured = any(e.name == name for e in entries)
        mine = sum(
            len(e.config)
            for e in entries
            if getattr(locked.get(e.name), "registered_by", None) == registrar
        )
        if mine + config_bytes > MAX_CONFIG_PER_REGISTRAR:
            raise RuntimeError(
                f"refusing to register {name}: the static config of what plugin {registrar} "
                f"registered would pass {MAX_CONFIG_PER_REGISTRAR} bytes, its share of "
                "plugins.json; unregister one first"
            )
        if name in locked or configured:
            what = "installed" if name in locked else "configured in plugins.json"
            raise RuntimeError(
                f"refusing to register {name}: a plugin of that name is already {what}; a "
                "registration never replaces one (unregister yours first; another is the user's)"
            )
        if sum(e.registered_by == registrar for e in locked.values()) >= MAX_REGISTERED:
            raise RuntimeError(
                f"refusing to register {name}: plugin {registrar} has registered "
                f"{MAX_REGISTERED} plugins, the most one plugin may; unregister one first"
            )

    def _record(self, registrar: str, entry: PluginEntry, release: Release) -> None:
        """The second commit: the entry as requested, and who registered it."""
        name = entry.name
        with changing(self.home):
            entries = read_plugins_json(self.home.plugins_json)
            locked = read_lock(self.home.lock_file)
            current = locked.get(name)
            if current is None or current.version != release.version:
                raise RuntimeError(f"plugin {name} changed while {registrar} registered it")
            locked[name] = dataclasses.replace(current, registered_by=registrar)
            entries = [_requested(e, entry) if e.name == name else e for e in entries]
            data = dumps_plugins_json(entries)
            if len(data) > MAX_PLUGINS_JSON_BYTES:
                raise RuntimeError(
                    f"refusing to register {name}: plugins.json would grow past "
                    f"{MAX_PLUGINS_JSON_BYTES} bytes"
                )
            commit(self.home, data, dumps_lock(locked))


def _check_request(release: Release, entry: PluginEntry, *, dev_mode: bool) -> None:
    """The request may not contradict the signed manifest or ask for more than it earns."""
    name = entry.name
    if release.name != name:
        raise ValueError(
            f"refusing to register {name}: the package is plugin {release.name}; the "
            "config's name must be the signed manifest's"
        )
    added = [t for t in entry.types if t not in release.types]
    if added:
        raise ValueError(
            f"refusing to register {name}: the config asks for type {', '.join(added)}, which "
            f"its signed manifest does not declare ({', '.join(release.types)}); types may "
            "only be narrowed"
        )
    earned = release.trust_level == "official" or (release.key_id is None and dev_mode)
    if entry.privileged and not earned:
        raise PermissionError(
            f"refusing to register {name} as privileged: it is signed by a "
            f"{release.trust_level or 'untrusted'} key, not an official one, and only a person "
            f"can grant privilege (`pm-plugins grant {name} privileged`)"
        )


def _requested(installed: PluginEntry, entry: PluginEntry) -> PluginEntry:
    """The installer's entry for the new release, as the registration asked for it."""
    return PluginEntry(
        installed.name,
        entry.types or installed.types,
        entry.config,
        entry.privileged,
        entry.disable_autostart,
        installed.version,
    )


def _not_theirs(registrar: str, name: str, owner: str | None) -> str:
    whose = f"plugin {owner} registered it" if owner else "a person installed it"
    return (
        f"refusing to unregister {name}: {whose}, and a plugin may unregister only the plugins "
        f"it registered (`pm-plugins uninstall {name}` removes it)"
    )
