"""The passphrases of an index's keys on the command line: one per role, from the
environment or a prompt that names the role.

Why it exists: `pm-plugins index` commands decrypt only the keys of the roles they sign
(a cron job re-signing the timestamp holds only the timestamp passphrase), so the
passphrase is asked per role, when that role first signs: `PM_PLUGINS_<ROLE>_PASSPHRASE`,
else `PM_PLUGINS_KEY_PASSPHRASE`, else (at a terminal) a prompt; without a terminal the
command refuses with one sentence naming the variable. Shared by `cli.index` and
`cli.index_keys`.
"""

from __future__ import annotations

import sys

import click

from index.signers import Passphrases, env_passphrases

__all__ = ["Passphrases", "role_passphrases"]


def role_passphrases() -> Passphrases:
    """The environment first, then a prompt at a terminal (twice for a new key)."""
    from_env = env_passphrases()

    def source(role: str, new: bool) -> bytes | None:
        found = from_env(role, new)
        if found is not None or sys.stdin is None or not sys.stdin.isatty():
            return found
        text: str = click.prompt(
            f"Passphrase for the {role} keys",
            hide_input=True,
            confirmation_prompt=new,
            default="",
            show_default=False,
            err=True,
        )
        return text.encode("utf-8") or None

    return source
