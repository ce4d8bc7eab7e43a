"""One module manager for the host's own modules and its plugins.

A module has a name, the modules it needs, and start/stop callables. The manager:

- `register()` checks a module before anything starts and is all-or-nothing: a duplicate
  name is refused and leaves no trace;
- `start_all()` starts modules level by level (`loader.order.start_levels`), the modules of
  one level concurrently. A module whose dependency is missing, disabled or failed, or that
  sits in a cycle, is not started and keeps one reason; a module whose start raises is
  FAILED with the error. Everything else boots: one bad module never stops the host;
- `stop_all()` stops in reverse order and is safe to call twice;
- `disable(name)` stops its running dependents first (most dependent first), then it, and
  remembers "no"; `enable(name)` starts it again and then the dependents it had stopped.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from loader.order import DependencyCycleError, find_cycle, start_levels, unsatisfied

log = logging.getLogger("pm_plugins.modules")


class ModuleState(enum.StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"
    DISABLED = "disabled"
    FAILED = "failed"
    REFUSED = "refused-dependency"


@dataclass
class Module:
    """A registered module and where it stands."""

    name: str
    needs: tuple[str, ...]
    start: Callable[[], None]
    stop: Callable[[], None]
    kind: str = "core"  # "core" or "plugin"
    state: ModuleState = ModuleState.STOPPED
    reason: str = ""
    stopped_for: set[str] = field(default_factory=set)  # disabled modules that stopped it


class ModuleManager:
    """Registers modules, starts them in dependency order, stops them in reverse."""

    #: Module starts are mostly waiting (a plugin process starting up, its handshake): this
    #: many at once keeps every CPU busy during a large boot (bench/loader.py).
    DEFAULT_MAX_PARALLEL = 32

    def __init__(self, max_parallel: int = DEFAULT_MAX_PARALLEL) -> None:
        self._modules: dict[str, Module] = {}
        self._disabled: set[str] = set()
        self._lock = threading.RLock()
        self._max_parallel = max_parallel

    # -- registration -------------------------------------------------------------------

    def register(
        self,
        name: str,
        needs: Iterable[str],
        start: Callable[[], None],
        stop: Callable[[], None],
        *,
        kind: str = "core",
        disabled: bool = False,
    ) -> Module:
        """Register a module (not started). Raises ValueError for a duplicate name."""
        with self._lock:
            if name in self._modules:
                raise ValueError(f"a module named {name} is already registered")
            module = Module(name, tuple(needs), start, stop, kind)
            self._modules[name] = module
            if disabled:
                self._disabled.add(name)
                module.state = ModuleState.DISABLED
            return module

    def get(self, name: str) -> Module:
        with self._lock:
            try:
                return self._modules[name]
            except KeyError:
                raise LookupError(f"no module named {name!r} is registered") from None

    def modules(self) -> list[Module]:
        with self._lock:
            return list(self._modules.values())

    def is_disabled(self, name: str) -> bool:
        return name in self._disabled

    def _deps(self) -> dict[str, tuple[str, ...]]:
        return {m.name: m.needs for m in self._modules.values()}

    # -- start and stop --------------------------------------------------------------------

    def start_all(self) -> None:
        """Start every module that can start; the others keep their reason."""
        with self._lock:
            deps = self._deps()
            for name, cycle in self._cycles(deps).items():
                self._refuse(
                    name,
                    f"{name} was not started: it is part of a dependency cycle "
                    f"({' -> '.join(cycle)})",
                )
                deps.pop(name)
            unavailable = {
                m.name: ("is disabled" if m.name in self._disabled else "failed to start")
                for m in self._modules.values()
                if m.name in self._disabled or m.state is ModuleState.FAILED
            }
            unavailable |= {
                m.name: "cannot start" for m in self._modules.values() if m.name not in deps
            }
            for name, why in unsatisfied(deps, unavailable).items():
                self._refuse(name, f"{name} was not started: {why}")
                deps.pop(name)
            for name in list(deps):
                if name in unavailable:
                    deps.pop(name)
            levels = start_levels(deps)
        for level in levels:
            self._start_level(level)

    def _start_level(self, level: list[str]) -> None:
        todo = []
        with self._lock:
            for name in level:
                module = self._modules[name]
                blockers = [
                    d for d in module.needs if self._modules[d].state is not ModuleState.RUNNING
                ]
                if blockers:
                    self._refuse(
                        name,
                        f"{name} was not started: it needs {blockers[0]}, which is not running",
                    )
                elif module.state is not ModuleState.RUNNING:
                    todo.append(module)
        if not todo:
            return
        with ThreadPoolExecutor(min(self._max_parallel, len(todo))) as pool:
            list(pool.map(self._start_one, todo))

    def _start_one(self, module: Module) -> None:
        try:
            module.start()
        except Exception as err:
            with self._lock:
                module.state, module.reason = ModuleState.FAILED, f"{module.name} failed: {err}"
            log.error("%s", module.reason)
            return
        with self._lock:
            module.state, module.reason = ModuleState.RUNNING, ""
            module.stopped_for.clear()

    def _stop_one(self, module: Module, state: ModuleState, reason: str = "") -> None:
        if module.state is ModuleState.RUNNING:
            try:
                module.stop()
            except Exception as err:  # a stop failure must not keep others running
                log.error("%s failed to stop: %s", module.name, err)
        module.state, module.reason = state, reason

    def stop_all(self) -> None:
        """Stop running modules, dependents before what they need. Safe to call twice."""
        with self._lock:
            deps = self._deps()
            try:
                levels = start_levels(deps)
            except DependencyCycleError:
                levels = [sorted(deps)]
            for level in reversed(levels):
                for name in reversed(level):
                    self._stop_one(self._modules[name], ModuleState.STOPPED)

    # -- disable and enable at run time -------------------------------------------------------

    def dependents(self, name: str) -> list[str]:
        """Modules needing `name`, directly or not, most dependent first."""
        deps = self._deps()
        found: set[str] = set()
        frontier = {name}
        while frontier:
            frontier = {m for m, needs in deps.items() if set(needs) & frontier} - found
            found |= frontier
        found.discard(name)
        order = [m for level in start_levels({m: deps[m] for m in found}) for m in level]
        return list(reversed(order))

    def disable(self, name: str) -> list[str]:
        """Stop `name` and, first, whatever needs it; returns the dependents stopped."""
        with self._lock:
            module = self.get(name)
            dependents = self.dependents(name)
            stopped = self._stop_running(
                dependents,
                ModuleState.STOPPED,
                lambda dep: f"{dep} is stopped while {name} is disabled",
            )
            for dep_name in dependents:
                self._modules[dep_name].stopped_for.add(name)
            self._disabled.add(name)
            self._stop_one(module, ModuleState.DISABLED, f"{name} is disabled")
            return stopped

    def enable(self, name: str) -> None:
        """Start `name` again, then the dependents that its disabling had stopped."""
        with self._lock:
            module = self.get(name)
            self._disabled.discard(name)
            module.state, module.reason = ModuleState.STOPPED, ""
            for dependent in self._modules.values():
                dependent.stopped_for.discard(name)
                if dependent.state is ModuleState.REFUSED:
                    dependent.state, dependent.reason = ModuleState.STOPPED, ""
        self.start_all()

    def mark_failed(
        self, name: str, reason: str, *, only_if: Callable[[], bool] | None = None
    ) -> list[str]:
        """A running module failed on its own (a plugin that crashed too often): it is
        FAILED with `reason`, and its running dependents are stopped, most dependent first.
        Nothing happens unless it is RUNNING and `only_if()` (checked under the lock) holds.
        Returns the dependents stopped."""
        with self._lock:
            module = self.get(name)
            if module.state is not ModuleState.RUNNING or (only_if is not None and not only_if()):
                return []
            stopped = self._stop_running(
                self.dependents(name),
                ModuleState.REFUSED,
                lambda dep: f"{dep} was stopped: it needs {name}, which failed",
            )
            module.state, module.reason = ModuleState.FAILED, reason
            log.error("%s", reason)
            return stopped

    # -- helpers ---------------------------------------------------------------------------

    def _stop_running(
        self, names: list[str], state: ModuleState, reason: Callable[[str], str]
    ) -> list[str]:
        """Stop those of `names` that run, in that order, each to `state` with its reason;
        returns the ones stopped. Hold the lock."""
        stopped = []
        for dep_name in names:
            dependent = self._modules[dep_name]
            if dependent.state is ModuleState.RUNNING:
                self._stop_one(dependent, state, reason(dep_name))
                stopped.append(dep_name)
        return stopped

    def _refuse(self, name: str, reason: str) -> None:
        module = self._modules[name]
        if module.state is ModuleState.RUNNING:
            return
        module.state, module.reason = ModuleState.REFUSED, reason
        log.warning("%s", reason)

    @staticmethod
    def _cycles(deps: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
        """Every module on a dependency cycle, with that cycle."""
        found: dict[str, list[str]] = {}
        remaining = dict(deps)
        while (cycle := find_cycle(remaining)) is not None:
            for name in cycle:
                found.setdefault(name, cycle)
                remaining.pop(name, None)
        return found
