"""pm_plugin.testing, the harness a plugin author uses from pytest (issue 15 item 2): a crash
is an exception carrying the plugin's own traceback, notifications are answered, logs and
print() output are read, and a process that is no plugin is refused in one sentence."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from pm_plugin import Decision, Verdict
from pm_plugin.testing import PluginCrashed, PluginStartError, PluginUnderTest

PLUGIN = """\
#!{python}
import logging
import os
import sys
import pm_plugin
from pm_plugin import Decision, Verdict

def decide(conn):
    if conn.entity.domain == "crash.test.":
        return helper_that_fails(conn)
    if conn.entity.domain == "exit.test.":
        os._exit(3)
    if conn.entity.domain == "ask.test.":
        actions = [("yes", "Yes"), ("no", "No")]
        picked = pm_plugin.notify("Allow?", "ask.test wants out", actions=actions)
        return Verdict.ACCEPT if picked == "yes" else Verdict.BLOCK, f"the user said {{picked}}"
    print("deciding", conn.entity.domain)
    logging.getLogger("mine").warning("decided %s", conn.entity.domain)
    return Verdict.ACCEPT, "fine"

def helper_that_fails(conn):
    raise RuntimeError("the rules file is gone")

pm_plugin.register_decider(decide)
pm_plugin.serve()
"""


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN.format(python=sys.executable))
    path.chmod(0o755)
    return path


def test_a_crash_in_decide_raises_with_the_plugins_own_traceback(plugin_file: Path) -> None:
    with PluginUnderTest(plugin_file, name="mine") as plugin:
        with pytest.raises(PluginCrashed) as err:
            plugin.decide(domain="crash.test")
        said = str(err.value)
        assert said.startswith("decide failed in plugin mine: the rules file is gone")
        assert "Traceback (most recent call last)" in err.value.traceback
        assert f'File "{plugin_file}", line' in err.value.traceback
        assert "in helper_that_fails" in err.value.traceback
        assert plugin.decide(domain="fine.test").verdict == Verdict.ACCEPT  # still serving


def test_a_process_that_dies_in_a_call_says_how(plugin_file: Path) -> None:
    dies = pytest.raises(PluginCrashed, match="plugin mine exited with code 3 during decide")
    with PluginUnderTest(plugin_file, name="mine") as plugin, dies:
        plugin.decide(domain="exit.test")


def test_a_notification_is_answered_and_notify_returns_the_action(plugin_file: Path) -> None:
    with PluginUnderTest(plugin_file, name="mine") as plugin:
        got: list[object] = []
        asking = threading.Thread(target=lambda: got.append(plugin.decide(domain="ask.test")))
        asking.start()
        notice = plugin.next_notification()
        assert notice.title == "Allow?" and notice.actions == (("yes", "Yes"), ("no", "No"))
        plugin.answer(notice, "no")
        asking.join(5)
        (decision,) = got
        assert decision == Decision(Verdict.BLOCK, "the user said no")


def test_print_output_and_logs_are_kept(plugin_file: Path) -> None:
    with PluginUnderTest(plugin_file, name="mine") as plugin:
        plugin.decide(domain="fine.test")
        assert plugin.printed("deciding fine.test.")
        assert plugin.logged("decided fine.test.")
        (record,) = [r for r in plugin.logs if r.module == "mine"]
        assert (record.level, record.message) == ("warn", "decided fine.test.")
        assert not plugin.printed("never said", timeout=0.05)


def test_something_that_is_not_a_plugin_is_refused_in_one_sentence(tmp_path: Path) -> None:
    script = tmp_path / "not_a_plugin"
    script.write_text("#!/bin/sh\necho 'hello, I am not a plugin' >&2\nexit 4\n")
    script.chmod(0o755)
    with pytest.raises(PluginStartError) as err:
        PluginUnderTest(script).start()
    assert str(err.value) == "the plugin exited with code 4; it said:\nhello, I am not a plugin"


EARLY = """\
#!{python}
import pm_plugin

pm_plugin.on_init(lambda: pm_plugin.notify("Hello", "from on_init"))
pm_plugin.register_decider(lambda conn: pm_plugin.Verdict.UNDECIDED)
pm_plugin.serve()
"""


def test_a_notification_shown_before_the_test_asks_is_still_the_next(tmp_path: Path) -> None:
    script = tmp_path / "early.py"
    script.write_text(EARLY.format(python=sys.executable))
    script.chmod(0o755)
    with PluginUnderTest(script, name="early") as plugin:
        assert plugin.notifications.wait(1, 5)  # shown already
        first = plugin.next_notification()
        assert (first.title, first.message) == ("Hello", "from on_init")
        with pytest.raises(AssertionError, match=r"showed no notification in 0\.2 s"):
            plugin.next_notification(timeout=0.2)


def test_half_a_handshake_and_a_hang_is_refused_within_the_timeout(tmp_path: Path) -> None:
    script = tmp_path / "half"
    script.write_text("#!/bin/sh\nprintf '1|1|unix|/tmp/x'\nexec sleep 30\n")
    script.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(PluginStartError, match="printed no handshake in 1 s"):
        PluginUnderTest(script, start_timeout=1.0).start()
    assert time.monotonic() - started < 10
