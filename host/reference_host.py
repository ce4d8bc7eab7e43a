"""The reference host behind `pm-plugins boot`: core modules that make plugins real.

Why this exists: plugins are only meaningful next to the host modules they extend. The
reference host registers, in one `ModuleManager`:

- core modules `config`, `notifications`, `firewall` (decider chain, default verdict,
  reporters), `resolver` (resolver plugins, then the system resolver), `auth` (hook
  pipeline) and `spn` (off by default);
- every plugin the loader verified (`loader.boot.plan_boot`), needing the host modules and
  plugins its signed manifest requires. Each runs from a sealed in-memory copy of the
  verified bytes, so a file swapped after verification is never executed.

It answers status, DNS and connection questions (the control socket calls these), and can
disable and enable modules at run time (dependents stop first and come back).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

from host.config_admin import ConfigAdmin
from host.data_owners import claim_for as claim_data_for
from host.dns_answers import record_json, system_resolve
from host.errors import HookAbortedError
from host.registration import PackageInstaller, Registrations, RuntimeModules
from host.runtime import PluginHost, PluginSpec, PluginState
from host.sandbox import SandboxSettings
from host.status_rows import plugin_row, refused_row
from keys.errors import KeysError
from keys.store import TrustStore
from loader.binding import signer_refusal
from loader.boot import BootPlan, PlannedPlugin, PlanStatus
from loader.capabilities import Capabilities
from loader.errors import LoaderError
from loader.home import Home, HostSettings, read_host_settings
from loader.host_modules import (
    CORE_MODULES,
    HOST_VERSION,
    OFF_BY_DEFAULT,
    plan_for_host,
)
from loader.journal import reading
from loader.sealed import SealedExecutable, seal
from pm_plugin.hooks import HOOK_POINTS
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import network_pb2, resolver_pb2

__all__ = ["ModuleUnavailableError", "ReferenceHost", "seal"]

_QUERY_IDS = itertools.count(1)  # every queried connection has an id of its own
log = logging.getLogger("pm_plugins.host")

TYPE_NUMBERS = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
VERDICT_NAMES = {
    v.number: v.name.removeprefix("VERDICT_").lower() for v in network_pb2.Verdict.DESCRIPTOR.values
}


class ModuleUnavailableError(LoaderError):
    """A question reached a module that is not running."""


@dataclass
class _CoreModule:
    """A core module's switch; its work is done by the host's methods below."""

    name: str
    running: bool = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


class ReferenceHost:
    """Core modules plus verified plugins, booted in dependency order."""

    def __init__(
        self,
        home: Home,
        *,
        dev_mode: bool,
        trust: TrustStore | None = None,
        disabled: tuple[str, ...] = OFF_BY_DEFAULT,
        plugin_host: PluginHost | None = None,
        threshold: int | None = None,
        installer: PackageInstaller | None = None,
    ) -> None:
        """`installer` (from `pm-plugins boot`) lets privileged plugins register plugins."""
        self.home = home
        self.dev_mode = dev_mode
        self.trust = trust if trust is not None else TrustStore.load(home.trust_store)
        self.disabled = disabled
        settings = _settings_of(home)
        self.threshold = threshold if threshold is not None else settings.signature_threshold
        self.plugins = plugin_host or PluginHost(
            base_directory=str(home.data_dir),
            sandbox=SandboxSettings(mode=settings.sandbox, protected=(str(home.root),)),
            cache_max_ttl=settings.decision_cache_max_ttl,
        )
        if self.plugins.on_state is None:
            self.plugins.on_state = self._on_plugin_state
        self.plugins.admit = self._admit  # every start and restart re-checks the signers
        self.config = ConfigAdmin(self.plugins.services.config, home.config_values, self._signers)
        self.modules = RuntimeModules()
        self.core = {name: _CoreModule(name) for name in CORE_MODULES}
        self.plan = BootPlan([])
        self._sealed: dict[str, SealedExecutable] = {}
        self._rows: dict[str, PlannedPlugin] = {}
        self._stop_requested = threading.Event()
        self.registrations = Registrations(self, installer) if installer is not None else None
        self.plugins.registry = self.registrations  # RegisterPlugin / UnregisterPlugin

    # -- boot and shutdown ----------------------------------------------------------------------

    def boot(self) -> BootPlan:
        """Verify, register and start everything that may run. Never raises for a plugin."""
        if self.registrations is not None:
            self.registrations.sweep()
        try:
            with reading(self.home):  # no install commits or deletes while we read
                self.plan = plan_for_host(
                    self.home,
                    trust=self.trust,
                    dev_mode=self.dev_mode,
                    threshold=self.threshold,
                )
        except (LoaderError, OSError) as err:  # an unreadable journal or state root: boot
            self.plan = BootPlan([], error=str(err))  # the host's own modules, no plugin
        if self.plan.error:
            log.error("no plugin starts: %s", self.plan.error)
        for warning in self.plan.warnings:
            log.warning("%s", warning)
        for name, needs in CORE_MODULES.items():
            core = self.core[name]
            self.modules.register(
                name, needs, core.start, core.stop, disabled=name in self.disabled
            )
        for row in self.plan.plugins:
            self._rows[row.name] = row
            if not row.runs:
                log.error("refused: %s", row.reason)
                continue
            self._register_plugin(row)
        self.modules.start_all()
        if self.registrations is not None:
            self.registrations.booted()  # start what plugins registered while we booted
        return self.plan

    def _register_plugin(self, row: PlannedPlugin) -> None:
        assert row.artifact is not None
        if row.status is PlanStatus.UNSIGNED:
            log.warning(
                "DEV MODE: plugin %s is UNSIGNED and runs only because dev mode is on", row.name
            )
        try:
            sealed = seal(row.artifact, row.name)
        except LoaderError as err:  # no sealed memfd here: refuse rather than run from a path
            row.reason = str(err)
            log.error("refused: %s", err)
            return
        row.artifact = None  # the sealed copy is what runs; drop ours
        if not claim_data_for(self.home, row):
            sealed.close()
            return
        self._sealed[row.name] = sealed
        if row.privilege_refusal:
            log.warning("%s", row.privilege_refusal)
        entry = row.entry
        self.plugins.add(
            PluginSpec(
                name=row.name,
                argv=sealed.argv,
                types=row.types,
                privileged=row.privileged,
                static_config=entry.config,
                disable_autostart=entry.disable_autostart,
                version=row.version or "",
                pass_fds=sealed.pass_fds,
                capabilities=row.manifest.capabilities if row.manifest else Capabilities(),
                shown_as=str(row.directory / row.manifest.artifact.filename)
                if row.manifest and row.directory
                else "",
            )
        )
        name = row.name
        try:
            self.modules.register(
                name,
                row.needs,
                lambda: self._start_plugin(name),
                lambda: self.plugins.stop(name),
                kind="plugin",
                disabled=entry.disable_autostart or name in self.disabled,
            )
        except ValueError as err:  # plan_boot refuses host-module names; never crash boot
            row.status, row.reason = PlanStatus.NAME_TAKEN, str(err)

    def _start_plugin(self, name: str) -> None:
        self.plugins.start(name)

    def _on_plugin_state(self, name: str, state: PluginState, reason: str) -> None:
        """A plugin that supervision gave up on fails its module; dependents stop.

        Events arrive late (on their own thread): the module is failed only if the plugin
        is still FAILED when the module manager looks, under its lock."""
        if state is not PluginState.FAILED:
            return
        with contextlib.suppress(LookupError):
            self.modules.mark_failed(
                name, reason, only_if=lambda: self.plugins.get(name).state is PluginState.FAILED
            )

    def shutdown(self) -> None:
        """Stop every module, plugins before what they need; release the sealed copies."""
        if self.registrations is not None:
            self.registrations.close()  # a registration under way ends first; no new ones
        self.modules.stop_all()
        self.plugins.stop_all()
        for sealed in self._sealed.values():
            sealed.close()
        self._sealed.clear()

    def request_stop(self) -> None:
        """Ask `pm-plugins boot` to shut the host down (a signal or `pm-plugins stop`)."""
        self._stop_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether a stop was requested within `timeout`."""
        return self._stop_requested.wait(timeout)

    # -- run-time switches ------------------------------------------------------------------

    def _admit(self, name: str) -> str | None:
        """Whether plugin `name` may start now: its boot-time signers, against the trust
        store as it is on disk now (a key revoked or untrusted since stops it)."""
        row = self._rows.get(name)
        if row is None or row.verdict is None:
            return None
        try:
            self.trust = TrustStore.load(self.home.trust_store)
        except KeysError as err:
            return f"plugin {name} may not start: the trust store cannot be read ({err})"
        return signer_refusal(
            name, row.verdict, self.trust, threshold=self.threshold, dev_mode=self.dev_mode
        )

    def _signers(self, name: str) -> tuple[str, ...]:
        """The trusted keys that verified plugin `name`'s running release (none: unsigned)."""
        row = self._rows.get(name)
        return row.key_ids if row is not None else ()

    def recheck_trust(self) -> list[str]:
        """After `keys revoke` or `untrust`: stop every plugin no longer signed by enough
        trusted keys; returns their names."""
        stopped = []
        for instance in self.plugins.plugins():
            reason = self._admit(instance.name)
            if reason and instance.state is not PluginState.FAILED:
                self.plugins.refuse(instance.name, reason)
                stopped.append(instance.name)
        return stopped

    def disable(self, name: str) -> list[str]:
        """Turn a module off; returns the dependents stopped with it."""
        return self.modules.disable(name)

    def enable(self, name: str) -> None:
        self.modules.enable(name)

    # -- questions --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Every module and every configured plugin: state, version, signer, pid, restarts."""
        rows: list[dict[str, Any]] = []
        for module in self.modules.modules():
            row: dict[str, Any] = {
                "name": module.name,
                "kind": module.kind,
                "state": module.state.value,
                "reason": module.reason,
            }
            if module.kind == "core":
                row |= {"version": HOST_VERSION, "signer": "host", "pid": None, "restarts": 0}
            else:
                try:
                    planned, instance = self._rows[module.name], self.plugins.get(module.name)
                except LookupError:  # unregistered while we looked
                    continue
                row |= plugin_row(planned, instance, module.state)
            rows.append(row)
        registered = {m.name for m in self.modules.modules()}
        rows += [refused_row(p) for p in self.plan.plugins if p.name not in registered]
        return {
            "dev_mode": self.dev_mode,
            "host_version": HOST_VERSION,
            "plugins_json_error": self.plan.error,
            "modules": rows,
        }

    def resolve(self, name: str, qtype: str = "A") -> dict[str, Any]:
        """Resolve through resolver plugins, then the system resolver."""
        if not self.core["resolver"].running:
            raise ModuleUnavailableError("the resolver module is not running")
        number = TYPE_NUMBERS.get(qtype.upper())
        if number is None:
            raise ValueError(f"unknown DNS type {qtype!r} (known: {', '.join(TYPE_NUMBERS)})")
        fqdn = name if name.endswith(".") else name + "."
        question = resolver_pb2.DNSQuestion(name=fqdn, type=number, **{"class": 1})
        resolution = self.plugins.resolve(question)
        if resolution is not None:
            return {
                "name": fqdn,
                "type": qtype.upper(),
                "answered_by": resolution.plugin,
                "rcode": resolution.response.rcode,
                "records": [record_json(rr) for rr in resolution.response.rrs],
            }
        return system_resolve(fqdn, qtype.upper())

    def run_hook(
        self, hook_point: str, entity_id: str, untyped_meta: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The auth module's hook pipeline on one entity: the entity as the hook plugins
        leave it, or which plugin aborted the request and why."""
        if not self.core["auth"].running:
            raise ModuleUnavailableError("the auth module is not running")
        if hook_point not in HOOK_POINTS:
            raise ValueError(f"unknown hook point {hook_point!r} (known: {', '.join(HOOK_POINTS)})")
        entity = extensions_pb2.Entity(id=entity_id)
        entity.meta.untyped_meta.extend(untyped_meta)
        try:
            result = self.plugins.run_hook(hook_point, entity)
        except HookAbortedError as err:
            return {"hook_point": hook_point, "aborted": str(err), "entity": None}
        return {
            "hook_point": hook_point,
            "aborted": None,
            "entity": {
                "id": result.id,
                "locked": result.meta.locked,
                "untyped_meta": list(result.meta.untyped_meta),
            },
        }

    def decide(
        self,
        *,
        binary: str,
        domain: str = "",
        ip: str = "",
        port: int = 0,
        protocol: int = 6,
        inbound: bool = False,
    ) -> dict[str, Any]:
        """The firewall's verdict on one connection: the decider chain, else the default."""
        if not self.core["firewall"].running:
            raise ModuleUnavailableError("the firewall module is not running")
        conn = network_pb2.Connection(id=f"query-{next(_QUERY_IDS)}", inbound=inbound)
        conn.process.binary_path = binary
        conn.entity.domain = domain if not domain or domain.endswith(".") else domain + "."
        conn.entity.ip, conn.entity.port, conn.entity.protocol = ip, port, protocol
        conn.ip_protocol = protocol
        result = self.plugins.decide(conn)
        verdict, reason, by = result.verdict, result.reason, result.plugin
        if verdict == network_pb2.VERDICT_UNDECIDED:
            verdict, reason, by = network_pb2.VERDICT_ACCEPT, "no decider decided: default", None
        conn.verdict = verdict  # type: ignore[assignment]
        with contextlib.suppress(Exception):
            self.plugins.report(conn)
        shown = VERDICT_NAMES.get(verdict, str(verdict))
        return {"verdict": shown, "reason": reason, "by": by, "failed": result.failures()}


def _settings_of(home: Home) -> HostSettings:
    """host.json; a broken one means the defaults (one signature, sandbox required), said."""
    try:
        return read_host_settings(home.host_settings)
    except LoaderError as err:
        log.error("%s; using the defaults (one signature, sandbox required)", err)
        return HostSettings()
