"""The allowlist as its author tests it: a real process under pm_plugin.testing."""

from __future__ import annotations

from pathlib import Path

from pm_plugin import Verdict
from pm_plugin.testing import PluginUnderTest

PLUGIN = Path(__file__).with_name("plugin")


def test_curl_reaches_the_default_domains_and_nothing_else() -> None:
    with PluginUnderTest(PLUGIN, name="allowlist", types=["decider"]) as plugin:
        allowed = plugin.decide(binary="/usr/bin/curl", domain="example.com")
        assert (allowed.verdict, allowed.reason) == (Verdict.ACCEPT, "allowed")
        assert plugin.decide(binary="/usr/bin/curl", domain="safing.io").verdict == Verdict.ACCEPT
        other = plugin.decide(binary="/usr/bin/firefox", domain="example.com", id="c2")
        assert other.verdict == Verdict.UNDECIDED
        assert plugin.logged("ignoring decision request for c2: example.com.")


def test_the_rules_option_changes_the_verdicts_at_once() -> None:
    with PluginUnderTest(PLUGIN, name="allowlist", types=["decider"]) as plugin:
        plugin.wait_for_option("rules")
        assert plugin.option("rules") == ["/usr/bin/curl example.com.", "/usr/bin/curl safing.io."]
        plugin.wait_for_watch("rules")
        assert plugin.set_option("rules", ["/opt/My App/app Ex.ORG"]) == 1  # its watch got it
        assert plugin.logged("rules changed: now 1 rules")
        spaced = plugin.decide(binary="/opt/My App/app", domain="ex.org")
        assert spaced.verdict == Verdict.ACCEPT
        assert plugin.decide(binary="/usr/bin/curl", domain="example.com").verdict == (
            Verdict.UNDECIDED
        )
        assert plugin.cache.forgotten == 1  # it told the host its cached verdicts are stale
