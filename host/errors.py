"""The host's errors: what a running plugin did wrong, each a `LoaderError` so that a caller
catching the loader's base sees them too.

The message of each is the one sentence a user sees.
"""

from __future__ import annotations

from loader.errors import LoaderError


class HostError(LoaderError):
    """Base of every failure of a running plugin the host reports."""


class HandshakeError(HostError):
    """The plugin process did not complete go-plugin's handshake (bad, missing or late line)."""


class PluginProcessError(HostError):
    """The plugin process misbehaved: exited, crashed, or broke the protocol after starting."""


class PluginCallError(HostError):
    """A call into a plugin failed (error status, deadline, malformed or oversized reply)."""


class HookAbortedError(HostError):
    """A hook plugin refused the request; the message names the plugin and the hook point."""
