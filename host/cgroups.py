"""A control group per plugin start: memory (shared memory and page cache included) and tasks.

Why this exists: rlimits bound one process's heap (`RLIMIT_DATA`), not what a plugin makes
the kernel hold for it: a `memfd`, tmpfs files or page cache are charged to nobody's
rlimit, and an attack review filled 1.5 GiB of host memory through a memfd under the 1 GiB
data limit. A cgroup charges everything the plugin's processes allocate to the plugin and
ends the plugin (the kernel's OOM killer, inside the group) when it goes over.

A root host makes one group per start, named after the plugin and the host's pid, on
cgroup v2 (`/sys/fs/cgroup`, memory and pids controllers enabled below the root) or on the v1
`memory` and `pids` hierarchies (below the host's own group), sets `memory.max` (v1:
`memory.limit_in_bytes`) and `pids.max`, and puts the plugin's first process in it before
its first instruction: the command line starts with a `/bin/sh` step that writes its own pid into
each group's `cgroup.procs` and then `exec`s the rest. A host that cannot make groups (not
root, no controller) starts plugins without one, and `status` says so. A group is removed
when its plugin's processes are gone; groups a killed host left are removed by the next.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PluginCgroup", "join_command", "make_cgroup"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "pm-plugin-"
#: The `sh` step: join every group named before `--`, then become the rest of the line.
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


@dataclass(frozen=True)
class PluginCgroup:
    """The group(s) of one plugin start (one on v2, memory and pids on v1)."""

    paths: tuple[Path, ...]
    memory: int
    tasks: int

    def words(self) -> str:
        memory = self.memory >> 20
        return f"cgroup: {memory} MiB memory in all (shared memory included), {self.tasks} tasks"

    def remove(self, wait: float = 1.0) -> None:
        """Remove the groups once their processes are gone (the kernel refuses before)."""
        deadline = time.monotonic() + wait
        for path in self.paths:
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)


def make_cgroup(name: str, *, memory: int, tasks: int) -> tuple[PluginCgroup | None, str]:
    """A fresh group for one start of plugin `name`, and "" ; or None and why not."""
    if os.geteuid() != 0:
        return None, "the host is not root"
    leaf = f"{_PREFIX}{os.getpid()}-{name}-{time.monotonic_ns()}"
    try:
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            return _v2(leaf, memory, tasks), ""
        return _v1(leaf, memory, tasks), ""
    except OSError as err:
        return None, f"no cgroup could be made ({err.strerror or err})"


def _v2(leaf: str, memory: int, tasks: int) -> PluginCgroup:
    base = CGROUP_ROOT / "pm-plugins"
    (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory +pids")
    base.mkdir(exist_ok=True)
    (base / "cgroup.subtree_control").write_text("+memory +pids")
    _sweep(base)
    group = base / leaf
    group.mkdir()
    try:
        (group / "memory.max").write_text(str(memory))
        with contextlib.suppress(FileNotFoundError):
            (group / "memory.swap.max").write_text("0")
        (group / "pids.max").write_text(str(tasks))
    except OSError:
        group.rmdir()
        raise
    return PluginCgroup((group,), memory, tasks)


def _v1(leaf: str, memory: int, tasks: int) -> PluginCgroup:
    made: list[Path] = []
    try:
        for controller, limits in (
            ("memory", {"memory.limit_in_bytes": memory, "memory.memsw.limit_in_bytes": memory}),
            ("pids", {"pids.max": tasks}),
        ):
            group = _own_v1(controller) / leaf
            _sweep(group.parent)
            group.mkdir()
            made.append(group)
            for file, value in limits.items():
                if file != "memory.memsw.limit_in_bytes" or (group / file).exists():  # swap
                    (group / file).write_text(str(value))
    except OSError:
        for group in made:
            with contextlib.suppress(OSError):
                group.rmdir()
        raise
    return PluginCgroup(tuple(made), memory, tasks)


def _own_v1(controller: str) -> Path:
    """The host's own group in the v1 hierarchy of `controller`."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    raise FileNotFoundError(2, f"no {controller} cgroup hierarchy")


def _sweep(folder: Path) -> None:
    """Remove the groups hosts that are gone (killed) left behind; a live host's stay."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            pid = entry.name.removeprefix(_PREFIX).split("-", 1)[0]
            if entry.name.startswith(_PREFIX) and pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    entry.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def join_command(group: PluginCgroup | None) -> list[str]:
    """The `sh` step that puts the plugin's first process in `group` (nothing for None)."""
    if group is None:
        return []
    return ["/bin/sh", "-c", _JOIN, "sh", *(str(p / "cgroup.procs") for p in group.paths), "--"]
