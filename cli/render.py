"""Plain text for the CLI: tables (no dependency: columns padded to their widest cell) and a
plugin's capabilities and its sandbox in words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loader.capabilities import Capabilities


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """`head` and `rows` as aligned columns; the last column is never padded."""
    cells = [list(head), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def may(capabilities: Capabilities, indent: str = "  ") -> list[str]:
    """What a release may do, one indented `may:` line per ask (Capabilities.describe;
    "may start child processes" becomes "may: start child processes")."""
    return [f"{indent}may: {line.removeprefix('may ')}" for line in capabilities.describe()]


def sandboxes(modules: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """Per running plugin, what its sandbox enforces: (warnings of the unconfined, to show
    first, loudly; lines of the confined)."""
    loud: list[str] = []
    quiet: list[str] = []
    for module in modules:
        box = module.get("sandbox")
        if not box:
            continue
        name = module["name"]
        if not box["confined"]:
            loud.append(f"WARNING: plugin {name} runs UNCONFINED: {box['reason']}")
            continue
        quiet.append(f"plugin {name}: confined")
        quiet += [f"  {what}: {box[what]}" for what in ENFORCED]
    return loud, quiet


#: What `status` shows of each sandbox, in this order.
ENFORCED = ("filesystem", "network", "processes", "uid", "limits")
