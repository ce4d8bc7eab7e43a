"""The loader's errors: one base, split by who is at fault.

The message of each is the one sentence a user sees. A bug in the caller is a
`ValueError`/`RuntimeError`, never one of these.
"""

from __future__ import annotations


class LoaderError(Exception):
    """Base of every refusal or failure the loader reports."""


class HandshakeError(LoaderError):
    """The plugin process did not complete go-plugin's handshake (bad, missing or late line)."""


class PluginProcessError(LoaderError):
    """The plugin process misbehaved: exited, crashed, or broke the protocol after starting."""


class PluginCallError(LoaderError):
    """A call into a plugin failed (error status, deadline, malformed or oversized reply)."""


class HookAbortedError(LoaderError):
    """A hook plugin refused the request; the message names the plugin and the hook point."""
