"""The environment a plugin process starts with: nothing of the host's beyond PATH and locale.

Why this is its own module: what a plugin inherits is part of the trust boundary (no host
secrets in variables) and of go-plugin's protocol (the cookie, the offered versions, the
socket folder); one place says all of it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from host.handshake import COOKIE_KEY, COOKIE_VALUE

__all__ = ["minimal_environment", "plugin_path"]


def plugin_path() -> str:
    """The host's PATH with its own interpreter's folder first: a `#!/usr/bin/env python3`
    plugin runs under the host's Python (which has `pm_plugin`), venv or not."""
    own = os.path.dirname(sys.executable)
    rest = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    first = [own] if os.path.isabs(own) else []  # never "" (the current directory)
    return os.pathsep.join([*first, *(p for p in rest if p and p != own)])


def minimal_environment(socket_dir: str, offered: Sequence[int], home: str = "") -> dict[str, str]:
    """The environment a plugin starts with: nothing of the host's beyond PATH and locale."""
    return {
        "PATH": plugin_path(),
        "LANG": "C.UTF-8",
        "HOME": home or socket_dir,
        "TMPDIR": socket_dir,
        COOKIE_KEY: COOKIE_VALUE,
        "PLUGIN_PROTOCOL_VERSIONS": ",".join(str(v) for v in offered),
        "PLUGIN_MIN_PORT": "10000",
        "PLUGIN_MAX_PORT": "25000",
        "PLUGIN_UNIX_SOCKET_DIR": socket_dir,
        "GRPC_EXPERIMENTS": os.environ.get("GRPC_EXPERIMENTS", ""),
        # a Python plugin run from a sealed copy has "/" as its script dir: never import from it
        "PYTHONSAFEPATH": "1",
    }
