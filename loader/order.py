"""Start order of modules from their declared dependencies, as pure functions.

`start_levels` groups modules into levels: every module's dependencies are in earlier
levels, so the modules of one level can start concurrently and levels start in order
(stopping runs the levels backwards). A cycle is a `DependencyCycleError` naming it. Both
come from the standard library's `graphlib.TopologicalSorter` (whose `CycleError` carries
the cycle).
`unsatisfied` says, for each module, which dependency is missing, disabled or failed, so
the caller can refuse that module (and, transitively, its dependents) with one reason and
boot the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from graphlib import CycleError, TopologicalSorter

from loader.errors import LoaderError


class DependencyCycleError(LoaderError):
    """Modules depend on each other in a circle; `cycle` lists it, first name repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"modules depend on each other in a cycle: {' -> '.join(cycle)}")


def _sorter(deps: Mapping[str, Collection[str]]) -> TopologicalSorter[str]:
    """`deps` as a graphlib sorter; dependencies on names not in `deps` are left out."""
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for module in sorted(deps):
        sorter.add(module, *sorted(d for d in deps[module] if d in deps))
    return sorter


def _as_needs(cycle: list[str]) -> list[str]:
    """graphlib's cycle (each node a predecessor of the next) read as "needs", starting at
    its smallest name, first name repeated last: ``a -> b`` means a needs b."""
    ring = list(reversed(cycle))[:-1]
    start = ring.index(min(ring))
    ring = ring[start:] + ring[:start]
    return [*ring, ring[0]]


def find_cycle(deps: Mapping[str, Collection[str]]) -> list[str] | None:
    """One dependency cycle among `deps` (module -> modules it needs), or None."""
    try:
        _sorter(deps).prepare()
    except CycleError as err:
        return _as_needs(list(err.args[1]))
    return None


def start_levels(deps: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Modules grouped so each one's dependencies come in earlier groups.

    Dependencies on names not in `deps` are ignored here. Names within a level are sorted.

    Raises:
        DependencyCycleError: naming one cycle.
    """
    sorter = _sorter(deps)
    try:
        sorter.prepare()
    except CycleError as err:
        raise DependencyCycleError(_as_needs(list(err.args[1]))) from None
    levels: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        levels.append(ready)
        sorter.done(*ready)
    return levels


def unsatisfied(
    deps: Mapping[str, Collection[str]],
    unavailable: Mapping[str, str],
) -> dict[str, str]:
    """Modules that cannot start, each with one reason.

    `unavailable` maps a module that will not run (disabled, failed, refused) to why. A
    module needing an unknown or unavailable module cannot start, nor can anything that
    needs it, transitively; the reason names the first missing link.
    """
    blocked: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for module in sorted(deps):
            if module in blocked or module in unavailable:
                continue
            for dep in sorted(deps[module]):
                if dep not in deps:
                    blocked[module] = f"it needs {dep}, which is not installed or not a module"
                elif dep in unavailable:
                    blocked[module] = f"it needs {dep}, which {unavailable[dep]}"
                elif dep in blocked:
                    blocked[module] = f"it needs {dep}, which cannot start"
                else:
                    continue
                changed = True
                break
    return blocked
