"""history as its author tests it: a real process under pm_plugin.testing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pm_plugin import Verdict
from pm_plugin.testing import PluginUnderTest

PLUGIN = Path(__file__).with_name("plugin")


def test_reported_connections_land_in_the_database() -> None:
    with PluginUnderTest(PLUGIN, name="history", types=["reporter"]) as plugin:
        plugin.report(binary="/usr/bin/curl", domain="example.com", verdict=Verdict.BLOCK, id="c1")
        db = sqlite3.connect(plugin.data_dir / "history.sqlite")
        try:
            rows = db.execute("SELECT id, binary, domain, verdict FROM connections").fetchall()
        finally:
            db.close()
    assert rows == [("c1", "/usr/bin/curl", "example.com.", "BLOCK")]
