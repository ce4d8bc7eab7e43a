"""Example plugins built with pm_plugin, and the end-to-end demo."""
