"""How a plugin appears in the host's `status`: its signers, its sandbox, who registered it.

Why this is its own module: the reference host composes `status` from the module manager,
the boot plan and the plugin host; these are the per-plugin pieces, pure and small.
"""

from __future__ import annotations

from typing import Any

from host.instance import PluginInstance, PluginState
from loader.boot import PlannedPlugin, PlanStatus
from loader.modules import ModuleState

__all__ = ["enforced", "plugin_row", "refused_row", "registered_by", "signer_words"]


def plugin_row(
    planned: PlannedPlugin, instance: PluginInstance, state: ModuleState
) -> dict[str, Any]:
    """A registered plugin's status fields beyond its module's name, kind, state and reason."""
    out: dict[str, Any] = {
        "version": planned.version,
        "signer": signer_words(planned),
        "verification": planned.status.value,
        "pid": instance.pid,
        "restarts": getattr(instance, "restarts", 0),
        "capabilities": instance.spec.capabilities.describe(),
        "sandbox": enforced(instance),
        "registered_by": registered_by(planned),
    }
    if state is ModuleState.RUNNING and instance.state is not PluginState.RUNNING:
        out["state"] = instance.state.value  # crashed, restarting or failed since
        out["reason"] = instance.reason
    attempt = instance._attempt  # a start under way (Configure may take a while)
    if instance.state is PluginState.STARTING and attempt is not None:
        out["state"], out["pid"] = PluginState.STARTING.value, attempt.pid
    return out


def refused_row(planned: PlannedPlugin) -> dict[str, Any]:
    """The status row of a plugin the loader refused (it has no module)."""
    return {
        "name": planned.name,
        "kind": "plugin",
        "state": "refused",
        "reason": planned.reason,
        "version": planned.version,
        "signer": signer_words(planned),
        "verification": planned.status.value,
        "pid": None,
        "restarts": 0,
        "registered_by": registered_by(planned),
    }


def registered_by(planned: PlannedPlugin) -> str | None:
    """The plugin that registered it at run time (plugins.lock), None if a person did."""
    return planned.locked.registered_by if planned.locked is not None else None


def enforced(instance: PluginInstance) -> dict[str, Any] | None:
    """What the plugin's sandbox enforces, while it has a process."""
    process = instance.process
    if process is None or process.enforced is None:
        return None
    return process.enforced.to_json()


def signer_words(row: PlannedPlugin) -> str:
    """The keys that verified it and their level, or unsigned."""
    if row.status is PlanStatus.UNSIGNED:
        return "unsigned (dev mode)" if row.runs else "unsigned"
    if row.key_id:
        keys = ", ".join(k[:12] for k in row.key_ids or (row.key_id,))
        return f"{keys} ({row.trust_level or 'untrusted'})"
    return "-"
