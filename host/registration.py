"""Plugins that a privileged plugin registers and unregisters while the reference host runs.

Why this exists: the plugin manager's RegisterPlugin carries only a `PluginConfig` (the PR's
wire), and the host may not import the installer (`registry_client`). So the package travels
by convention and the installer is handed in by the top floor:

- the registering plugin (the *registrar*) writes a package that `pm-plugins install ./PKG`
  would accept (a folder: the artifact and `manifest.dsse.json`; in dev mode also a plugin
  source folder) into its own data folder, at `<state root>/data/<registrar>/register/<name>/`;
- the host treats that folder as hostile (the plugin writes it, and may race the host): it
  copies it (`host.package_copy`: no symlink followed, plain files only, the loader's size
  bounds) into a 0700 folder inside the state root, which no plugin can see, and hands only
  that copy to the installer (`PackageInstaller`, built by
  `pm-plugins boot` from `registry_client.registrar`): the bytes verified and installed are
  the copy's, read once. The copy is deleted whatever happens;
- the installed plugin is then planned by the loader exactly as at boot (`plan_for_host`),
  sealed, registered as a module and started, without a restart. If the loader refuses it,
  it is uninstalled again and the registration refused: nothing stays half-registered.

Unregistering stops the plugin, forgets its module and sealed copy, and uninstalls it; it is
refused for a host module, for a plugin a running module needs, and for a plugin the caller
did not register (plugins.lock's `registered_by`, which `status` shows).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from host.package_copy import copy_package
from keys import strict_json
from keys.errors import KeysError, StrictJSONError
from keys.store import TrustStore
from loader.boot import BootPlan
from loader.errors import LoaderError
from loader.fields import is_identifier, show
from loader.host_modules import CORE_MODULES, plan_for_host
from loader.journal import reading
from loader.modules import ModuleManager, ModuleState
from loader.order import DependencyCycleError
from loader.plugins_json import PluginEntry
from pm_plugin.types import TYPE_NAMES
from pm_plugin.wire.portmaster import plugins_pb2

if TYPE_CHECKING:
    from host.reference_host import ReferenceHost

__all__ = [
    "MAX_STATIC_CONFIG_BYTES",
    "PackageInstaller",
    "Registrations",
    "RuntimeModules",
    "entry_of",
]

log = logging.getLogger("pm_plugins.host")

#: The largest static config a registration may give (it is written into plugins.json).
MAX_STATIC_CONFIG_BYTES = 16 * 1024
_WIRE_TYPES = {int(number): name for name, number in TYPE_NAMES.items()}
_COPY_PREFIX = ".register-"


class PackageInstaller(Protocol):
    """What `pm-plugins boot` hands the host (`registry_client.registrar.Registrar`).

    Refusals are one sentence each, as `PluginRegistry` types them."""

    def install(self, registrar: str, package: Path, entry: PluginEntry) -> str:
        """Verify and install the package folder `package` as `entry` asks; its version."""
        ...

    def uninstall(self, registrar: str, name: str) -> str:
        """Uninstall plugin `name`, which `registrar` registered; its version."""
        ...


class RuntimeModules(ModuleManager):
    """The module manager, plus what run-time registration needs: start one new module, and
    forget one."""

    def start_one(self, name: str) -> None:
        """Start module `name` if it is stopped, not disabled, and everything it needs runs."""
        with self._lock:
            module = self.get(name)
            if name in self._disabled or module.state is not ModuleState.STOPPED:
                return
            blockers = [
                d
                for d in module.needs
                if d not in self._modules or self._modules[d].state is not ModuleState.RUNNING
            ]
            if blockers:
                self._refuse(
                    name, f"{name} was not started: it needs {blockers[0]}, which is not running"
                )
                return
        self._start_one(module)

    def needing(self, name: str) -> list[str]:
        """The registered modules that need `name`, directly or not."""
        with self._lock:
            try:
                return self.dependents(name)
            except DependencyCycleError:
                return sorted(m.name for m in self._modules.values() if name in m.needs)

    def unregister(self, name: str) -> None:
        """Stop module `name` if it runs and forget it (its name may be registered again)."""
        with self._lock:
            module = self.get(name)
            self._stop_one(module, ModuleState.STOPPED)
            del self._modules[name]
            self._disabled.discard(name)
            for other in self._modules.values():
                other.stopped_for.discard(name)


def entry_of(config: plugins_pb2.PluginConfig) -> PluginEntry:
    """The plugins.json entry a RegisterPlugin config asks for. ValueError: a bad name, an
    unknown type, a static config that is not JSON or too large."""
    name = config.name
    if not is_identifier(name):
        raise ValueError(
            f"refusing to register {show(name)}: a plugin name is 1-64 of a-z 0-9 _ -, "
            "starting with a letter or digit"
        )
    types: list[str] = []
    for number in config.plugin_types:
        if number == plugins_pb2.PLUGIN_TYPE_UNKNOWN:  # the PR's host pads the list with it
            continue
        if number not in _WIRE_TYPES:
            raise ValueError(f"refusing to register {name}: plugin type {number} is unknown")
        if _WIRE_TYPES[number] not in types:
            types.append(_WIRE_TYPES[number])
    return PluginEntry(
        name,
        tuple(types),
        _static_config(name, bytes(config.static_config)),
        config.privileged,
        config.disable_autostart,
    )


def _static_config(name: str, raw: bytes) -> bytes:
    """The static config as plugins.json holds it: compact JSON, b"" for none or null."""
    if len(raw) > MAX_STATIC_CONFIG_BYTES:
        raise ValueError(
            f"refusing to register {name}: its static config is {len(raw)} bytes, more than "
            f"the {MAX_STATIC_CONFIG_BYTES} a registration may give"
        )
    if not raw.strip():
        return b""
    try:
        value = strict_json.loads(raw, source=f"the static config of {name}")
    except StrictJSONError as err:
        raise ValueError(f"refusing to register {name}: {err}") from err
    if value is None:
        return b""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


# -- the registrations of one booted host ----------------------------------------------------


class Registrations:
    """The booted host's `PluginRegistry`: RegisterPlugin and UnregisterPlugin, one at a time."""

    def __init__(self, host: ReferenceHost, installer: PackageInstaller) -> None:
        self.host = host
        self.installer = installer
        self._lock = threading.Lock()  # one registration change at a time
        self._boot_lock = threading.Lock()
        self._booted = False
        self._pending: list[str] = []  # registered while the host was still booting
        self._closed = False  # the host shuts down: no more changes

    def sweep(self) -> None:
        """Remove copies a host killed mid-registration left behind. Called by `boot`, once
        this host owns the state root (its control socket is up): never another host's."""
        for stale in self.host.home.root.glob(_COPY_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)

    def register_plugin(self, registrar: str, config: plugins_pb2.PluginConfig) -> None:
        entry = entry_of(config)
        name = entry.name
        if name in CORE_MODULES:
            raise PermissionError(f"refusing to register {name}: it has the name of a host module")
        with self._lock:
            self._refuse_when_closed(name)
            if self._known(name):
                raise RuntimeError(
                    f"refusing to register {name}: the running host already has a plugin of "
                    "that name, and a registration never replaces one"
                )
            with tempfile.TemporaryDirectory(prefix=_COPY_PREFIX, dir=self.host.home.root) as tmp:
                package = copy_package(self.host.plugins.data_dir_of(registrar), name, Path(tmp))
                version = self.installer.install(registrar, package, entry)
            try:
                reason = self._adopt(name)
            except BaseException:
                self._undo(registrar, name)
                raise
            if reason is not None:
                self._undo(registrar, name)
                raise RuntimeError(f"refusing to register {name}: {reason}; nothing was installed")
        log.info("plugin %s registered plugin %s %s", registrar, name, version)
        self._start(name)

    def unregister_plugin(self, registrar: str, name: str) -> None:
        if not is_identifier(name):
            raise ValueError(f"refusing to unregister {show(name)}: that is no plugin name")
        if name in CORE_MODULES:
            raise PermissionError(f"refusing to unregister {name}: it is a host module")
        with self._lock:
            self._refuse_when_closed(name)
            needing = self.host.modules.needing(name)
            if needing:
                raise RuntimeError(
                    f"refusing to unregister {name}: {', '.join(needing)} needs it; only a "
                    "person can remove what others need"
                )
            version = self.installer.uninstall(registrar, name)  # refusals: nothing changed
            self._forget(name)
        log.info("plugin %s unregistered plugin %s %s", registrar, name, version)

    def reload(self, name: str) -> str | None:
        """Run plugin `name` again from what the state root holds now (a rebuilt dev build, an
        upgrade): stop it, forget its sealed copy, plan it as boot does, start it. Returns the
        loader's reason when it refuses what it found (the old copy is gone either way)."""
        if not is_identifier(name) or name in CORE_MODULES:
            raise ValueError(f"{show(name)} is not a plugin this host can reload")
        with self._lock:
            self._refuse_when_closed(name)
            needing = self.host.modules.needing(name)
            if needing:
                raise RuntimeError(
                    f"cannot reload {name} alone: {', '.join(needing)} needs it; restart the host"
                )
            off = any(
                m.name == name and m.state is ModuleState.DISABLED
                for m in self.host.modules.modules()
            )  # a person turned it off: it stays off
            self._forget(name)
            reason = self._adopt(name)
        if reason is None and off:
            self.host.modules.disable(name)
        elif reason is None:
            self._start(name)
        return reason

    def booted(self) -> None:
        """Boot has started its modules: start what was registered meanwhile."""
        with self._boot_lock:
            self._booted, pending, self._pending = True, self._pending, []
        for name in pending:
            self._start_now(name)

    def close(self) -> None:
        """The host shuts down: let a change under way finish, then refuse any more."""
        with self._lock:
            self._closed = True

    # -- steps ---------------------------------------------------------------------------------

    def _refuse_when_closed(self, name: str) -> None:
        if self._closed:
            raise RuntimeError(f"refusing to change plugin {name}: the host is shutting down")

    def _known(self, name: str) -> bool:
        host = self.host
        return name in host._rows or any(m.name == name for m in host.modules.modules())

    def _adopt(self, name: str) -> str | None:
        """Plan the new plugin as boot does and register it as a module; the loader's reason
        when it refuses it (then the host holds only its refused row for `status`, as boot
        does; a refused registration takes even that back)."""
        host = self.host
        try:
            trust = TrustStore.load(host.home.trust_store)
            with reading(host.home):
                plan = plan_for_host(
                    host.home, trust=trust, dev_mode=host.dev_mode, threshold=host.threshold
                )
        except (KeysError, LoaderError, OSError) as err:
            plan = BootPlan([], error=str(err))
        row = next((r for r in plan.plugins if r.name == name), None)
        reason = plan.error or (row.reason if row is not None else "it is not in plugins.json")
        if row is not None:  # refused too: `status` shows it refused and why, as boot does
            host._rows[name] = row
            host.plan.plugins = [*host.plan.plugins, row]
        if row is not None and row.runs:
            host._register_plugin(row)  # seals the verified bytes; a module unless refused
            if any(m.name == name for m in host.modules.modules()):
                return None
            reason = row.reason  # no sealed copy could be made
        return reason

    def _undo(self, registrar: str, name: str) -> None:
        """Take a registration back: out of the running host, then uninstalled."""
        self._forget(name)
        try:
            self.installer.uninstall(registrar, name)
        except Exception:
            log.exception("plugin %s stays installed after its registration failed", name)

    def _start(self, name: str) -> None:
        with self._boot_lock:
            if not self._booted:
                self._pending.append(name)
                return
        self._start_now(name)

    def _start_now(self, name: str) -> None:
        with contextlib.suppress(LookupError):  # unregistered meanwhile
            self.host.modules.start_one(name)
            if self._closed:  # the host began to shut down while it started: no stray process
                self.host.plugins.stop(name)

    def _forget(self, name: str) -> None:
        """Stop the plugin and drop everything the running host holds of it."""
        host = self.host
        with contextlib.suppress(LookupError):
            host.modules.unregister(name)
        with contextlib.suppress(LookupError):
            host.plugins.remove(name)
        host.plugins.services.config.forget_owner(name)  # its options go with it
        sealed = host._sealed.pop(name, None)
        if sealed is not None:
            sealed.close()
        host._rows.pop(name, None)
        host.plan.plugins = [r for r in host.plan.plugins if r.name != name]
