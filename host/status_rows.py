"""How a plugin appears in the host's `status`: its signers and its sandbox, in words.

Why this is its own module: the reference host composes `status` from the module manager,
the boot plan and the plugin host; these are the per-plugin pieces, pure and small.
"""

from __future__ import annotations

from typing import Any

from host.instance import PluginInstance
from loader.boot import PlannedPlugin, PlanStatus

__all__ = ["enforced", "signer_words"]


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
