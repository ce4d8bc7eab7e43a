"""Whose a plugin's data folder is: the keys that signed the release which last ran from it.

Why this exists: `uninstall` keeps a plugin's data folder for a reinstall, and the folder is
found by the plugin's name alone. A plugin of the same name by another publisher must not
inherit it (it may hold the first one's secrets). The host records, in `data-owners.json` of
the state root (no plugin can see it), which keys signed the release that last ran from each
folder. A release signed by none of them, or signed where the folder's was unsigned and the
reverse, gets a fresh folder; the old one is moved aside to `data-orphaned/`, never deleted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from keys import strict_json
from keys._fs import write_atomic
from keys.errors import StrictJSONError
from loader.boot import PlannedPlugin
from loader.home import Home

__all__ = ["ORPHANED_DIR", "OWNERS_FILE", "claim", "claim_for"]

OWNERS_FILE = "data-owners.json"
ORPHANED_DIR = "data-orphaned"

log = logging.getLogger("pm_plugins.host")


def _fits(recorded: list[str], signers: tuple[str, ...]) -> bool:
    """One key in common, or both unsigned (a dev build's folder stays a dev build's)."""
    return bool(set(recorded) & set(signers)) or not (recorded or signers)


def _read(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        return {}
    try:
        doc = strict_json.load(path, source=str(path))
    except (StrictJSONError, OSError) as err:
        log.warning("%s is unreadable (%s); every data folder is taken as its plugin's", path, err)
        return {}
    if not isinstance(doc, dict):
        return {}
    return {
        name: [k for k in keys if isinstance(k, str)]
        for name, keys in doc.items()
        if isinstance(name, str) and isinstance(keys, list)
    }


def claim(home: Home, name: str, signers: tuple[str, ...]) -> Path | None:
    """Make `data/<name>` the folder of a release signed by `signers` (its trusted key ids);
    returns where a folder of other signers was moved, if one was. OSError when it cannot be
    moved aside (the plugin must then not start with it)."""
    path = home.root / OWNERS_FILE
    owners = _read(path)
    folder = home.data_dir / name
    recorded = owners.get(name)
    moved = None
    if recorded is not None and not _fits(recorded, signers) and os.path.lexists(folder):
        moved = home.root / ORPHANED_DIR / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}"
        moved.parent.mkdir(mode=0o700, exist_ok=True)
        os.rename(folder, moved)  # the link or folder itself, never what it points to
    if recorded != sorted(signers):
        owners[name] = sorted(signers)
        data = (json.dumps(owners, indent=2, sort_keys=True) + "\n").encode()
        write_atomic(path, data, 0o600)
    return moved


def claim_for(home: Home, row: PlannedPlugin) -> bool:
    """`claim` for a planned plugin, said in the log; False (and `row.reason`) when its old
    folder cannot be moved aside, so it must not start."""
    try:
        moved = claim(home, row.name, row.key_ids)
    except OSError as err:
        row.reason = f"plugin {row.name}'s data folder cannot be moved aside: {err}"
        log.error("refused: %s", row.reason)
        return False
    if moved is not None:
        log.warning(
            "plugin %s is signed by other keys than the release that used its data folder;"
            " it gets a new one, and the old one is kept in %s", row.name, moved,
        )  # fmt: skip
    return True
