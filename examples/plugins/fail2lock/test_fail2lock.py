"""fail2lock as its author tests it: a real process under pm_plugin.testing."""

from __future__ import annotations

from pathlib import Path

from pm_plugin.testing import PluginUnderTest

PLUGIN = Path(__file__).with_name("plugin")


def test_three_failures_lock_and_tell_the_user_once() -> None:
    with PluginUnderTest(PLUGIN, name="fail2lock", types=["hook"]) as plugin:
        for _ in range(3):
            assert not plugin.run_hook("PreAuthCheck", "bob").meta.locked
        assert plugin.run_hook("PreAuthCheck", "bob").meta.locked
        assert not plugin.run_hook("PreAuthCheck", "alice").meta.locked
        notice = plugin.next_notification()
        assert (notice.event_id, notice.title) == ("locked-bob", "Account locked")
        assert "bob was locked after 3 failed logins within 5 minutes" in notice.message

        reset = plugin.run_hook("PreAuthCheck", "bob", "other:kept", "fail2lock:RESET")
        assert list(reset.meta.untyped_meta) == ["other:kept"] and not reset.meta.locked


def test_a_successful_login_clears_the_failures() -> None:
    config = {"allowed_fails": 2, "interval_seconds": 60}
    with PluginUnderTest(PLUGIN, name="fail2lock", static_config=config) as plugin:
        for _ in range(2):
            plugin.run_hook("PreAuthCheck", "carol")
        plugin.run_hook("PostAuthCheck", "carol")
        for _ in range(2):
            assert not plugin.run_hook("PreAuthCheck", "carol").meta.locked
        assert plugin.run_hook("PreAuthCheck", "carol").meta.locked
