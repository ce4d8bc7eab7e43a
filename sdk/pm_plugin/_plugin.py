"""`Plugin`: the plugin object a plugin author uses, `PluginBase` plus `serve()`.

`serve()` needs the go-plugin server (`_server`), and the server needs the plugin's
registrations and Configure state (`_framework.PluginBase`). Keeping the one method that
reaches for the server here, above both, keeps the SDK's imports free of a circle.
"""

from __future__ import annotations

from typing import NoReturn

from pm_plugin._framework import PluginBase


class Plugin(PluginBase):
    """One plugin: its registered types, callbacks, and what Configure told it."""

    def serve(self) -> NoReturn:
        """Serve this plugin to the host that started it; never returns."""
        from pm_plugin._server import serve

        serve(self)
