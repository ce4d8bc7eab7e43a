"""Start order of modules from their declared dependencies, as pure functions.

`start_levels` groups modules into levels: every module's dependencies are in earlier
levels, so the modules of one level can start concurrently and levels start in order
(stopping runs the levels backwards). A cycle is a `DependencyCycleError` naming it.
`unsatisfied` says, for each module, which dependency is missing, disabled or failed, so
the caller can refuse that module (and, transitively, its dependents) with one reason and
boot the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from loader.errors import LoaderError


class DependencyCycleError(LoaderError):
    """Modules depend on each other in a circle; `cycle` lists it, first name repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"modules depend on each other in a cycle: {' -> '.join(cycle)}")


def find_cycle(deps: Mapping[str, Collection[str]]) -> list[str] | None:
    """One dependency cycle among `deps` (module -> modules it needs), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(deps):
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, list[str]]] = [(root, sorted(deps.get(root, ())))]
        state[root] = 1
        path.append(root)
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop(0)
            if nxt not in deps:
                continue  # unknown dependencies are `unsatisfied`'s business
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(deps.get(nxt, ()))))
    return None


def start_levels(deps: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Modules grouped so each one's dependencies come in earlier groups.

    Dependencies on names not in `deps` are ignored here. Names within a level are sorted.

    Raises:
        DependencyCycleError: naming one cycle.
    """
    cycle = find_cycle(deps)
    if cycle is not None:
        raise DependencyCycleError(cycle)
    level_of: dict[str, int] = {}
    remaining = set(deps)
    levels: list[list[str]] = []
    while remaining:
        ready = sorted(m for m in remaining if all(d in level_of for d in deps[m] if d in deps))
        for m in ready:
            level_of[m] = len(levels)
        levels.append(ready)
        remaining -= set(ready)
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
