"""Small pieces every host service shares: the identity rules and the error-message helpers.

Why this exists: the config, notification and plugin-manager services and the backchannel server
each check a plugin name and quote request values into refusals the same way; this module holds
that one vocabulary, plus the limits the whole host-services wire shares.
"""

from __future__ import annotations

import json
import re

#: The owner name of options the host registers itself (e.g. `core/...`).
HOST_OWNER = "<host>"  # "<" is in no plugin name, so no plugin can pose as the host
#: Receive and send limit of a backchannel server (go-plugin would allow 2 GiB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class LimitError(ValueError):
    """A plugin asked the host to hold more than its bound (options, watches, notifications);
    the message says which bound and how to stay inside it."""


_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
#: A plugin name as used in namespaces and event ids: one segment, so no "/" and no ":".
_PLUGIN_NAME_RE = re.compile(_SEGMENT)


def _quote(text: str) -> str:
    """Quote a value taken from a request for an error message: escaped and bounded."""
    shown = text if len(text) <= 200 else text[:200] + "..."
    return json.dumps(shown)


def _check_plugin_name(name: str) -> None:
    if not _PLUGIN_NAME_RE.fullmatch(name):
        raise ValueError(
            f"plugin name {_quote(name)} cannot name a host-services namespace: expected letters, "
            "digits, '_', '.' or '-', not starting with '.' or '-'"
        )


def _exception_text(exc: BaseException) -> str:
    """An exception's message without the quotes `str(KeyError(...))` adds."""
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)
