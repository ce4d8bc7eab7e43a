"""The module manager: dependency order, concurrency, refusals, disable/enable at run time."""

from __future__ import annotations

import threading
import time

import pytest

from loader.modules import ModuleManager, ModuleState


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def add(
        self,
        manager: ModuleManager,
        name: str,
        needs: tuple[str, ...] = (),
        *,
        fail: bool = False,
        delay: float = 0.0,
    ) -> None:
        def start() -> None:
            time.sleep(delay)
            if fail:
                raise RuntimeError(f"{name} could not bind its socket")
            with self.lock:
                self.events.append(f"start {name}")

        def stop() -> None:
            with self.lock:
                self.events.append(f"stop {name}")

        manager.register(name, needs, start, stop)


def host_modules() -> tuple[ModuleManager, Recorder]:
    manager, rec = ModuleManager(), Recorder()
    rec.add(manager, "config")
    rec.add(manager, "notifications", ("config",))
    rec.add(manager, "firewall", ("config",))
    rec.add(manager, "resolver", ("config",))
    rec.add(manager, "spn", ("config",))
    rec.add(manager, "hosts", ("resolver",))
    rec.add(manager, "tunnel-stats", ("spn", "firewall"))
    return manager, rec


def test_starts_in_dependency_order_and_stops_in_reverse() -> None:
    manager, rec = host_modules()
    manager.start_all()
    starts = [e.split()[1] for e in rec.events]
    assert starts[0] == "config"
    assert starts.index("resolver") < starts.index("hosts")
    assert starts.index("spn") < starts.index("tunnel-stats")
    assert all(m.state is ModuleState.RUNNING for m in manager.modules())
    rec.events.clear()
    manager.stop_all()
    stops = [e.split()[1] for e in rec.events]
    assert stops[-1] == "config"
    assert stops.index("hosts") < stops.index("resolver")
    manager.stop_all()  # safe twice
    assert len(rec.events) == len(stops)


def test_independent_modules_start_concurrently() -> None:
    manager, rec = ModuleManager(), Recorder()
    for name in ("a", "b", "c", "d"):
        rec.add(manager, name, delay=0.3)
    started = time.monotonic()
    manager.start_all()
    assert time.monotonic() - started < 0.9


def test_one_bad_module_never_stops_the_others() -> None:
    manager, rec = ModuleManager(), Recorder()
    rec.add(manager, "config")
    rec.add(manager, "broken", ("config",), fail=True)
    rec.add(manager, "needs-broken", ("broken",))
    rec.add(manager, "needs-ghost", ("ghost",))
    rec.add(manager, "x", ("y",))
    rec.add(manager, "y", ("x",))
    rec.add(manager, "fine", ("config",))
    manager.start_all()
    state = {m.name: (m.state, m.reason) for m in manager.modules()}
    assert state["fine"][0] is ModuleState.RUNNING
    assert state["broken"] == (
        ModuleState.FAILED,
        "broken failed: broken could not bind its socket",
    )
    assert state["needs-broken"][0] is ModuleState.REFUSED
    assert "needs broken, which is not running" in state["needs-broken"][1]
    assert "needs ghost, which is not installed" in state["needs-ghost"][1]
    assert "dependency cycle (x -> y -> x)" in state["x"][1]
    assert state["y"][0] is ModuleState.REFUSED


def test_disable_and_reenable_a_dependency_at_run_time() -> None:
    manager, rec = host_modules()
    manager.start_all()
    rec.events.clear()
    stopped = manager.disable("spn")
    assert stopped == ["tunnel-stats"]
    assert rec.events == ["stop tunnel-stats", "stop spn"]
    assert manager.get("spn").state is ModuleState.DISABLED
    assert "while spn is disabled" in manager.get("tunnel-stats").reason
    assert manager.get("hosts").state is ModuleState.RUNNING
    rec.events.clear()
    manager.enable("spn")
    assert rec.events == ["start spn", "start tunnel-stats"]
    assert manager.get("tunnel-stats").state is ModuleState.RUNNING


def test_disabled_at_boot_refuses_its_dependents_with_a_reason() -> None:
    manager, rec = ModuleManager(), Recorder()
    rec.add(manager, "config")
    manager.register("spn", ("config",), lambda: None, lambda: None, disabled=True)
    rec.add(manager, "tunnel-stats", ("spn",))
    manager.start_all()
    assert manager.get("tunnel-stats").reason == (
        "tunnel-stats was not started: it needs spn, which is disabled"
    )


def test_register_is_all_or_nothing() -> None:
    manager, rec = ModuleManager(), Recorder()
    rec.add(manager, "config")
    with pytest.raises(ValueError, match="already registered"):
        rec.add(manager, "config")
    assert [m.name for m in manager.modules()] == ["config"]
