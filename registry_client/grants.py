"""What the user grants a plugin beyond what its signers earn it (`pm-plugins grant`).

Why this exists: `"privileged": true` in plugins.json takes effect only for a release signed
by an official key (loader.binding); for any other, the user says so once with `pm-plugins
grant NAME privileged`. The grant is recorded in `plugins.lock` next to the signers of the
installed release, so it binds to them: a release of that plugin signed by none of those
keys (which needs `--allow-new-signer` anyway) loses it (registry_client.installer), and a
grant cannot be written by editing plugins.json alone.
"""

from __future__ import annotations

import dataclasses

from loader.home import Home
from loader.journal import changing, commit
from loader.lockfile import GRANTS, Locked, dumps_lock, read_lock
from registry_client.reading import InstallError

__all__ = ["set_grant"]


def set_grant(home: Home, name: str, what: str, *, granted: bool) -> Locked:
    """Grant (or take back) `what` for installed plugin `name`; returns its lock record.

    Raises:
        InstallError: `what` is not a grant, or the plugin is not installed.
    """
    if what not in GRANTS:
        raise InstallError(f"{what} is not something a plugin can be granted ({', '.join(GRANTS)})")
    with changing(home):
        locked = read_lock(home.lock_file)
        current = locked.get(name)
        if current is None:
            raise InstallError(f"plugin {name} is not installed")
        grants = set(current.grants) | {what} if granted else set(current.grants) - {what}
        updated = dataclasses.replace(current, grants=tuple(sorted(grants)))
        if updated != current:
            locked[name] = updated
            commit(home, home.plugins_json.read_bytes(), dumps_lock(locked))
        return updated
