"""Test a plugin from pytest as the host would run it, with plain Python values.

Why this exists: a plugin author tests their plugin as a real process without the host or
protobufs. `PluginUnderTest` starts it under a small test host (go-plugin's handshake, the
broker, config, notifications, the decision cache) and calls it:

    from pm_plugin import Verdict
    from pm_plugin.testing import PluginUnderTest

    def test_curl_may_reach_example_com():
        with PluginUnderTest("./plugin", name="allowlist", types=["decider"]) as plugin:
            decision = plugin.decide(binary="/usr/bin/curl", domain="example.com")
            assert decision.verdict == Verdict.ACCEPT
            plugin.set_option("rules", ["/usr/bin/wget example.net."])  # its watch fires

A call the plugin fails raises `PluginCrashed` with the plugin's own traceback.
"""

from pm_plugin.testing._harness import HookRefused, PluginCrashed, PluginUnderTest, connection
from pm_plugin.testing._process import LogRecord, PluginStartError
from pm_plugin.testing._services import Notification

__all__ = [
    "HookRefused",
    "LogRecord",
    "Notification",
    "PluginCrashed",
    "PluginStartError",
    "PluginUnderTest",
    "connection",
]
