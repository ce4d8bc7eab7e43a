"""The hosts resolver as its author tests it: a real process under pm_plugin.testing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pm_plugin.testing import PluginCrashed, PluginUnderTest

PLUGIN = Path(__file__).with_name("plugin")


def test_names_in_the_file_are_answered_and_others_passed_on(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 printer.lan printer\n2001:db8::10 printer.lan\n")
    with PluginUnderTest(PLUGIN, name="hosts", static_config={"path": str(hosts)}) as plugin:
        a = plugin.resolve("Printer.LAN", "A")
        assert a is not None and [rr.data for rr in a.rrs] == [bytes([192, 0, 2, 10])]
        aaaa = plugin.resolve("printer.lan", "AAAA")
        assert aaaa is not None and len(aaaa.rrs) == 1
        assert plugin.resolve("example.com", "A") is None  # not handled: the next resolver asks


def test_a_bad_config_fails_its_start_with_the_reason() -> None:
    with pytest.raises(PluginCrashed, match="must be a file path"):
        PluginUnderTest(PLUGIN, name="hosts", static_config={"path": 7}).start()
