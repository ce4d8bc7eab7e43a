"""Supervision of plugin processes: crash -> restart with exponential backoff -> FAILED.

The policy's arithmetic is tested on its own; everything else with real plugin processes
(`tests/fakes/plugin.py`), killed with SIGKILL or made to refuse their restarts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from host.runtime import PluginHost, PluginInstance, PluginSpec, PluginState
from host.services.backchannel import HostServices
from host.supervise import DEFAULT_RESTART_POLICY, CrashHistory, RestartPolicy
from pm_plugin.wire.portmaster import network_pb2
from tests.conftest import FAKE_PLUGIN, wait_for

STARTING, RUNNING, CRASHED, FAILED, STOPPED = (
    PluginState.STARTING,
    PluginState.RUNNING,
    PluginState.CRASHED,
    PluginState.FAILED,
    PluginState.STOPPED,
)

#: Small values so each test stays well under 3 s: waits of 0.05 s, then 0.2 s, then give up.
FAST = RestartPolicy(initial_backoff=0.05, max_backoff=1.0, factor=4.0, max_crashes=3, window=60)


def spec(mode: str = "normal", *args: str) -> PluginSpec:
    return PluginSpec(
        name="fake", argv=(sys.executable, str(FAKE_PLUGIN), mode, *args), types=("decider",)
    )


def conn(domain: str) -> network_pb2.Connection:
    c = network_pb2.Connection(id="c1")
    c.entity.domain = domain
    return c


class Events:
    """An on_state listener that keeps what it heard, with the time it heard it."""

    def __init__(self) -> None:
        self.heard: list[tuple[float, str, PluginState, str]] = []

    def __call__(self, name: str, state: PluginState, reason: str) -> None:
        self.heard.append((time.monotonic(), name, state, reason))

    def states(self) -> list[PluginState]:
        return [state for _, _, state, _ in self.heard]

    def reasons(self, state: PluginState) -> list[str]:
        return [reason for _, _, s, reason in self.heard if s is state]

    def wait_states(self, *expected: PluginState, timeout: float = 5.0) -> None:
        """Wait until exactly `expected` was heard (announcements are asynchronous)."""
        wait_for(lambda: len(self.heard) >= len(expected), timeout)
        time.sleep(0.05)  # anything beyond `expected` would show up now
        assert self.states() == list(expected)


HostFactory = Callable[..., PluginHost]


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[HostFactory]:
    made: list[PluginHost] = []

    def make(**kwargs: object) -> PluginHost:
        kwargs.setdefault("handshake_timeout", 5.0)
        host = PluginHost(HostServices(), base_directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]
        made.append(host)
        return host

    yield make
    for host in made:
        host.stop_all()


def kill(instance: PluginInstance) -> int:
    pid = instance.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_with(arg: str) -> list[int]:
    """The live processes whose command line holds `arg`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if arg.encode() in Path(f"/proc/{entry}/cmdline").read_bytes() and alive(int(entry)):
                found.append(int(entry))
    return found


# -- the policy on its own ----------------------------------------------------------------------


def test_backoff_grows_by_the_factor_up_to_the_cap() -> None:
    policy = RestartPolicy(initial_backoff=0.5, max_backoff=3.0, factor=2.0, max_crashes=10)
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert policy.backoff(10_000) == 3.0  # no OverflowError for a long history
    assert policy.delay_after(9) == 3.0
    assert policy.delay_after(10) is None  # the max_crashes-th crash: give up


def test_only_crashes_within_the_window_count() -> None:
    history = CrashHistory(RestartPolicy(max_crashes=3, window=10.0))
    assert history.record(100.0) == 1
    assert history.record(105.0) == 2
    assert history.record(111.0) == 2  # the one at 100 s is older than the window
    assert history.recent(200.0) == 0
    history.record(200.0)
    history.clear()
    assert history.recent(200.0) == 0


def test_default_policy_is_on_and_sensible() -> None:
    assert PluginHost().restart is DEFAULT_RESTART_POLICY
    assert RestartPolicy(0.5, 30.0, 2.0, 5, 60.0) == DEFAULT_RESTART_POLICY


@pytest.mark.parametrize(
    "bad",
    [
        {"initial_backoff": -1},
        {"initial_backoff": float("nan")},
        {"max_backoff": 0.1, "initial_backoff": 1.0},
        {"factor": 0.5},
        {"max_crashes": 0},
        {"max_crashes": 2.5},
        {"window": 0},
    ],
)
def test_a_bad_policy_is_refused_when_made(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RestartPolicy"):
        RestartPolicy(**bad)  # type: ignore[arg-type]


# -- real processes -----------------------------------------------------------------------------


def test_sigkill_brings_the_plugin_back_with_a_new_pid(make_host: HostFactory) -> None:
    events = Events()
    host = make_host(restart=FAST, on_state=events)
    host.add(spec())
    assert host.start_all() == {}
    instance = host.get("fake")
    old_pid = kill(instance)

    assert wait_for(lambda: instance.running and instance.restarts == 1, 3.0), instance.reason
    assert instance.pid is not None and instance.pid != old_pid
    assert instance.process is not None and instance.process.pid == instance.pid
    assert alive(instance.pid) and not alive(old_pid)
    assert host.decide(conn("block.test.")).plugin == "fake"  # back in the chain
    events.wait_states(STARTING, RUNNING, CRASHED, STARTING, RUNNING)
    (crashed,) = events.reasons(CRASHED)
    assert "plugin fake killed by signal SIGKILL" in crashed
    assert crashed.endswith("; restarting in 0.05 s (crash 1 of 3 in 60 s)")
    assert "killed by signal SIGKILL" in instance.errors[-1][1]


def test_failing_restarts_back_off_then_give_up_with_the_last_stderr_lines(
    make_host: HostFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "fake" / "starts"  # its own data folder
    events = Events()
    host = make_host(restart=FAST, on_state=events)
    host.add(spec("refuse-restart", str(marker)))
    assert host.start_all() == {}
    instance = host.get("fake")
    kill(instance)

    assert wait_for(lambda: instance.state is FAILED, 5.0), instance.reason
    assert instance.reason == (
        "plugin fake crashed 3 times in 60 s; giving up; "
        "last stderr lines: fake refuses to start again"
    )
    assert instance.restarts == 0
    assert len(marker.read_text().splitlines()) == 3  # the first start and two refused ones
    events.wait_states(STARTING, RUNNING, CRASHED, STARTING, CRASHED, STARTING, FAILED)
    first, second = events.reasons(CRASHED)
    assert first.endswith("restarting in 0.05 s (crash 1 of 3 in 60 s)")
    assert "fake refuses to start again" in second  # a failed restart is a crash too
    assert second.endswith("restarting in 0.2 s (crash 2 of 3 in 60 s)")
    assert events.reasons(FAILED) == [instance.reason]

    # the waits between a crash and the next attempt, as the listener heard them
    times = [(t, state) for t, _, state, _ in events.heard]
    waits = [times[i + 1][0] - t for i, (t, state) in enumerate(times[:-1]) if state is CRASHED]
    assert len(waits) == 2
    assert waits[0] >= 0.05 * 0.8 and waits[1] >= 0.2 * 0.8
    assert waits[1] > waits[0] + 0.05  # it grew by the factor


def test_a_plugin_that_keeps_crashing_while_running_is_failed(make_host: HostFactory) -> None:
    host = make_host(restart=FAST)
    host.add(spec())
    host.start_all()
    instance = host.get("fake")
    for restarts in (1, 2):
        kill(instance)
        assert wait_for(lambda r=restarts: instance.running and instance.restarts == r, 3.0)  # type: ignore[misc]
    last_pid = kill(instance)
    assert wait_for(lambda: instance.state is FAILED, 3.0), instance.reason
    assert instance.reason.startswith("plugin fake crashed 3 times in 60 s; giving up")
    assert instance.restarts == 2 and instance.pid is None
    time.sleep(0.3)  # the longest backoff FAST would have used
    assert instance.state is FAILED and not alive(last_pid)
    assert host.decide(conn("block.test.")).plugin is None


def test_manual_start_of_a_failed_plugin_forgets_its_crashes(make_host: HostFactory) -> None:
    policy = RestartPolicy(initial_backoff=0.05, max_crashes=2, window=60)
    host = make_host(restart=policy)
    host.add(spec())
    host.start_all()
    instance = host.get("fake")
    kill(instance)
    assert wait_for(lambda: instance.running and instance.restarts == 1, 3.0)
    kill(instance)
    assert wait_for(lambda: instance.state is FAILED, 3.0)

    host.start("fake")
    assert instance.running
    kill(instance)  # with the old crashes still counted this would be FAILED at once
    assert wait_for(lambda: instance.running and instance.restarts == 2, 3.0), instance.reason


def test_stop_during_the_backoff_cancels_the_restart(make_host: HostFactory) -> None:
    events = Events()
    host = make_host(restart=RestartPolicy(initial_backoff=0.4), on_state=events)
    host.add(spec())
    host.start_all()
    instance = host.get("fake")
    crashed_process = instance.process
    kill(instance)
    assert wait_for(lambda: CRASHED in events.states(), 2.0)
    assert "restarting in 0.4 s" in events.reasons(CRASHED)[0]

    host.stop("fake")
    assert instance.state is STOPPED
    time.sleep(0.6)  # past the backoff: nothing may start now
    assert instance.state is STOPPED and instance.restarts == 0
    assert instance.process is crashed_process
    events.wait_states(STARTING, RUNNING, CRASHED, STOPPED)


def test_stop_during_a_restart_attempt_ends_it_at_once(
    make_host: HostFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "fake" / "starts"  # its own data folder
    host = make_host(restart=FAST, handshake_timeout=30.0)
    host.add(spec("hang-restart", str(marker)))
    host.start_all()
    instance = host.get("fake")
    kill(instance)
    # the restarted process is up and hanging before its handshake
    assert wait_for(lambda: len(marker.read_text().splitlines()) == 2, 5.0)
    assert instance.state is STARTING
    hanging = running_with(str(marker))  # as the host sees them: sandbox and plugin
    assert hanging

    started = time.monotonic()
    host.stop("fake")
    assert time.monotonic() - started < 5.0  # not the 30 s handshake timeout
    assert instance.state is STOPPED and instance.restarts == 0
    assert not [pid for pid in hanging if alive(pid)]


def test_a_listener_may_call_back_into_the_host(make_host: HostFactory) -> None:
    stopped = threading.Event()
    host: PluginHost

    def on_state(name: str, state: PluginState, reason: str) -> None:
        if state is CRASHED:  # e.g. the module manager stopping a plugin it gives up on
            host.stop(name)
            stopped.set()

    host = make_host(restart=RestartPolicy(initial_backoff=0.3), on_state=on_state)
    host.add(spec())
    host.start_all()
    instance = host.get("fake")
    kill(instance)
    assert stopped.wait(3.0)
    time.sleep(0.5)
    assert instance.state is STOPPED and instance.restarts == 0


def test_a_failing_listener_is_logged_and_ignored(
    make_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def on_state(name: str, state: PluginState, reason: str) -> None:
        raise RuntimeError("listener bug")

    host = make_host(restart=FAST, on_state=on_state)
    host.add(spec())
    assert host.start_all() == {}
    instance = host.get("fake")
    kill(instance)
    assert wait_for(lambda: instance.running and instance.restarts == 1, 3.0)
    failures = [r for r in caplog.records if "state listener failed" in r.getMessage()]
    assert failures and failures[0].levelno == logging.ERROR and failures[0].exc_info


def test_without_a_policy_a_crashed_plugin_stays_crashed(make_host: HostFactory) -> None:
    events = Events()
    host = make_host(restart=None, on_state=events)
    host.add(spec())
    host.start_all()
    instance = host.get("fake")
    kill(instance)
    assert wait_for(lambda: CRASHED in events.states(), 2.0)
    time.sleep(0.3)
    assert instance.state is CRASHED and instance.restarts == 0
    assert "killed by signal SIGKILL" in instance.reason and "restarting" not in instance.reason
    events.wait_states(STARTING, RUNNING, CRASHED)
