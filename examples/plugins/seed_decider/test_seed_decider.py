"""The seed decider as its author tests it: a real process under pm_plugin.testing."""

from __future__ import annotations

from pathlib import Path

from pm_plugin import Verdict
from pm_plugin.testing import PluginUnderTest

PLUGIN = Path(__file__).with_name("plugin")


def test_curl_to_the_two_domains_is_accepted() -> None:
    with PluginUnderTest(PLUGIN, name="seed_decider", types=["decider"]) as plugin:
        for domain in ("example.com", "safing.io"):
            assert plugin.decide(binary="/usr/bin/curl", domain=domain).verdict == Verdict.ACCEPT
        assert plugin.decide(binary="/usr/bin/curl", domain="example.org").verdict == (
            Verdict.UNDECIDED
        )
