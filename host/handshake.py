"""go-plugin's handshake line, parsed as a pure function.

After start a plugin prints exactly one line on stdout:
`CORE-PROTOCOL|APP-PROTOCOL|NETWORK|ADDRESS|PROTOCOL[|SERVER-CERT]`. go-plugin v1.5 writes the
sixth field (empty without AutoMTLS); older servers write five. We accept both, and refuse
anything else with a sentence that quotes the line. The host, not the plugin, decides whether
the announced app version is one it offered (a Go plugin announces 1 regardless).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from host.errors import HandshakeError

#: go-plugin's core protocol version; bumped by go-plugin only on incompatible changes.
CORE_PROTOCOL_VERSION = 1
#: The app protocol version of the Portmaster plugin PR.
APP_PROTOCOL_VERSION = 1
#: The magic cookie of the Portmaster plugin PR (a UX guard against running a plugin by hand).
COOKIE_KEY = "PORTMASTER_PLUGIN"
COOKIE_VALUE = "hello"
#: go-plugin reads at most this much of stdout before the handshake.
MAX_HANDSHAKE_LINE = 64 * 1024


@dataclass(frozen=True)
class Handshake:
    """What a plugin announced: where to connect and with which protocol."""

    core_version: int
    app_version: int
    network: str
    address: str
    protocol: str


def _quote(line: str) -> str:
    shown = line if len(line) <= 200 else line[:200] + "..."
    return repr(shown)


def parse_handshake(line: str, offered: Collection[int] = (APP_PROTOCOL_VERSION,)) -> Handshake:
    """Parse one handshake line (without or with its newline).

    Raises:
        HandshakeError: the line is not a go-plugin gRPC handshake for a version we offered.
    """
    text = line[:-1] if line.endswith("\n") else line
    if text.endswith("\r"):
        text = text[:-1]
    parts = text.split("|")
    if len(parts) not in (5, 6):
        raise HandshakeError(
            f"the plugin's first line is not a go-plugin handshake "
            f"(expected 5 or 6 '|'-separated fields): {_quote(line)}"
        )
    core_s, app_s, network, address, protocol = parts[:5]
    if len(parts) == 6 and parts[5] != "":
        raise HandshakeError(
            "the plugin announced an AutoMTLS certificate, which this host does not use: "
            f"{_quote(line)}"
        )
    if not (core_s.isdigit() and app_s.isdigit() and core_s.isascii() and app_s.isascii()):
        raise HandshakeError(f"the plugin's handshake has non-numeric versions: {_quote(line)}")
    core, app = int(core_s), int(app_s)
    if core != CORE_PROTOCOL_VERSION:
        raise HandshakeError(
            f"the plugin speaks go-plugin core protocol {core}, this host speaks "
            f"{CORE_PROTOCOL_VERSION}: {_quote(line)}"
        )
    if app not in offered:
        wanted = ", ".join(str(v) for v in sorted(offered))
        raise HandshakeError(
            f"the plugin announced app protocol version {app}, but the host offered only "
            f"{wanted}: {_quote(line)}"
        )
    if network != "unix":
        raise HandshakeError(
            f"the plugin listens on network {network!r}; this host accepts only unix "
            f"sockets: {_quote(line)}"
        )
    if not address.startswith("/"):
        raise HandshakeError(f"the plugin's socket path is not absolute: {_quote(line)}")
    if protocol != "grpc":
        raise HandshakeError(
            f"the plugin speaks protocol {protocol!r}; this host speaks only grpc: {_quote(line)}"
        )
    return Handshake(core, app, network, address, protocol)
