"""The sandbox a plugin starts in: the command line that confines it, and what it enforces.

Why this exists: a signature says who made a plugin, not what it does once started. Every
plugin, Python or Go, is started inside a sandbox built from its signed capabilities
(loader.capabilities) before its first instruction, with the kernel's own mechanisms through
maintained tools:

- **bubblewrap** (`bwrap`, Debian's package, what Flatpak uses): a mount namespace that shows
  the plugin only the runtime (read-only), its own executable, its socket folder, its data
  folder (read-write) and what it declared, with the state root hidden even when it lies under
  a runtime folder; its own PID namespace (every process it starts ends with it, and it sees
  no other process); a network namespace with no interfaces unless it declared network; IPC
  and UTS namespaces; `--die-with-parent`.
- **setpriv** (util-linux): no new privileges, parent-death signal; when the host runs as
  root, the plugin runs under an unprivileged uid of its own with no groups and no
  capabilities (bubblewrap runs privileged, then drops to that uid inside).
- **prlimit** (util-linux): no core dumps, bounded open files, bounded data memory, and,
  under a uid of its own, a bounded number of processes.

`host.json`'s `sandbox` decides what happens when bubblewrap cannot be used: `required` (the
default) refuses to start the plugin with one sentence why; `best-effort` starts it with the
process limits only and every status says "unconfined" and why.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import subprocess
import sys
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pm_plugin
from host import landlock
from host.cgroups import PluginCgroup, join_command, make_cgroup
from host.declared import Declared, close_all, inside, open_declared
from host.errors import PluginProcessError
from host.seccomp import program_fd
from loader.capabilities import Capabilities

__all__ = [
    "Enforced",
    "SandboxSettings",
    "Sandboxed",
    "give_tree",
    "is_plugin_uid",
    "sandbox_command",
    "uid_for",
]

MAX_OPEN_FILES = 1024
#: Data memory (heap and private writable mappings) a plugin may hold.
MAX_DATA_BYTES = 1 << 30
#: The largest file a plugin may write (RLIMIT_FSIZE).
MAX_FILE_BYTES = 1 << 30
#: Processes and threads a plugin under a uid of its own may have.
MAX_PROCESSES = 512
#: Unprivileged uids given to plugins when the host runs as root: FIRST_UID + crc32 % RANGE.
FIRST_UID, UID_RANGE = 2_000_000, 1_000_000
REQUIRED, BEST_EFFORT = "required", "best-effort"
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_BASE = ("/etc/ld.so.cache", "/etc/localtime")
_ETC_NETWORK = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/services",
    "/etc/protocols", "/etc/ssl", "/etc/ca-certificates",
)  # fmt: skip


@dataclass(frozen=True)
class SandboxSettings:
    """The host's sandbox policy: `required` or `best-effort`, and the paths no plugin may
    see (the state root: trust store, host.json, plugins.json, keys, other plugins)."""

    mode: str = REQUIRED
    protected: tuple[str, ...] = ()
    memory: int = MAX_DATA_BYTES  # per plugin: its heap (rlimit) and all it holds (cgroup)


@dataclass(frozen=True)
class Enforced:
    """What one plugin start enforces, in words, for `status`."""

    confined: bool
    filesystem: str
    network: str
    processes: str
    uid: str
    limits: str
    reason: str = ""  # why it is unconfined

    def to_json(self) -> dict[str, Any]:
        return {
            "confined": self.confined,
            "filesystem": self.filesystem,
            "network": self.network,
            "processes": self.processes,
            "uid": self.uid,
            "limits": self.limits,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Sandboxed:
    """The command line a plugin starts with, the uid it runs under (None: the host's), and
    what it enforces."""

    argv: list[str]
    uid: int | None
    enforced: Enforced
    binds: tuple[str, ...] = field(default=(), repr=False)
    pass_fds: tuple[int, ...] = ()  # the seccomp program's: close once the plugin started
    cgroup: PluginCgroup | None = None  # remove once the plugin's processes are gone

    def close(self) -> None:
        for fd in self.pass_fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def is_plugin_uid(uid: int) -> bool:
    """Whether `uid` is one of the range plugins get (never a system or user account)."""
    return FIRST_UID <= uid < FIRST_UID + UID_RANGE


def uid_for(name: str, taken: Collection[int] = ()) -> int:
    """The unprivileged uid a plugin runs under when the host is root: stable per name, and
    never one of `taken` (the other plugins' uids: a name chosen to collide gets the next)."""
    offset = zlib.crc32(name.encode()) % UID_RANGE
    while FIRST_UID + offset in taken:
        offset = (offset + 1) % UID_RANGE
    return FIRST_UID + offset


def _tools() -> tuple[dict[str, str], str]:
    """The tools found on PATH, and why bubblewrap cannot be used ("" when it can)."""
    return _tools_on(os.environ.get("PATH", os.defpath))


@functools.cache
def _tools_on(search_path: str) -> tuple[dict[str, str], str]:
    found = {
        n: p for n in ("prlimit", "setpriv", "bwrap") if (p := shutil.which(n, path=search_path))
    }
    missing = [n for n in ("prlimit", "setpriv") if n not in found]
    if missing:
        raise PluginProcessError(
            f"plugins cannot be started confined: {' and '.join(missing)} (util-linux) is "
            "not on PATH"
        )
    if "bwrap" not in found:
        return found, "bubblewrap (bwrap) is not installed"
    probe = [found["bwrap"], *_namespaces(network=False), "--ro-bind", "/", "/", "--", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return found, f"bubblewrap cannot run here ({err})"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no reason"]
        return found, f"bubblewrap cannot create namespaces here ({said[0]})"
    return found, ""


def _namespaces(*, network: bool) -> list[str]:
    flags = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    flags.append("--unshare-cgroup-try")
    if os.geteuid() != 0:
        flags.append("--unshare-user")
    if not network:
        flags.append("--unshare-net")
    return flags


def _limits(dedicated_uid: bool, memory: int) -> list[str]:
    out = ["--core=0:0", f"--nofile={MAX_OPEN_FILES}:{MAX_OPEN_FILES}"]
    out += [f"--data={memory}:{memory}", f"--fsize={MAX_FILE_BYTES}:{MAX_FILE_BYTES}"]
    if dedicated_uid:
        out.append(f"--nproc={MAX_PROCESSES}:{MAX_PROCESSES}")
    return out


def _limits_words(dedicated_uid: bool, memory: int) -> str:
    words = f"no core dumps, {MAX_OPEN_FILES} open files, {memory >> 20} MiB data memory"
    words += f", files of at most {MAX_FILE_BYTES >> 20} MiB"
    if dedicated_uid:
        return words + f", {MAX_PROCESSES} processes"
    return words + " (no process limit: the plugin shares the host's uid)"


def sandbox_command(
    name: str,
    argv: Sequence[str],
    caps: Capabilities,
    *,
    socket_dir: str,
    data_dir: str,
    settings: SandboxSettings,
    uid: int | None = None,
) -> Sandboxed:
    """The confined command line for one start; `uid` is the plugin's own uid when the host is
    root (default: `uid_for(name)`).

    Raises:
        PluginProcessError: the declaration reaches private files, or the sandbox cannot be
            set up and `settings.mode` is `required`.
    """
    declared = open_declared(name, caps, protected=settings.protected, own=(socket_dir, data_dir))
    try:
        return _command(name, argv, caps, declared, socket_dir, data_dir, settings, uid)
    except BaseException:
        close_all(declared)
        raise


def _command(
    name: str,
    argv: Sequence[str],
    caps: Capabilities,
    declared: Sequence[Declared],
    socket_dir: str,
    data_dir: str,
    settings: SandboxSettings,
    uid: int | None,
) -> Sandboxed:
    tools, why_not = _tools()
    root = os.geteuid() == 0
    guard = [tools["setpriv"], "--no-new-privs", "--pdeathsig", "KILL", "--"]
    if why_not:
        if settings.mode != BEST_EFFORT:
            raise PluginProcessError(
                f"plugin {name} cannot start: its sandbox cannot be set up because {why_not} "
                '(host.json "sandbox" is "required")'
            )
        close_all(declared)  # unconfined: nothing is bound
        full = [tools["prlimit"], *_limits(False, settings.memory), "--", *guard, *argv]
        return Sandboxed(full, None, _unconfined(why_not, settings.memory))
    uid = (uid if uid is not None else uid_for(name)) if root else None
    binds = _binds(
        argv, caps, declared, socket_dir=socket_dir, data_dir=data_dir, settings=settings
    )
    drop: list[str] = []
    if uid is not None:
        drop = [tools["setpriv"], f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        drop += ["--inh-caps=-all", "--bounding-set=-all", "--"]
    bwrap = [tools["bwrap"], *_namespaces(network=bool(caps.network)), *binds]
    seccomp: tuple[int, ...] = () if caps.processes else (program_fd(),)
    bwrap += [*(a for fd in seccomp for a in ("--seccomp", str(fd))), "--chdir", data_dir, "--"]
    drop += _network_rules(caps)
    group, no_group = make_cgroup(name, memory=settings.memory, tasks=MAX_PROCESSES)
    limits = [tools["prlimit"], *_limits(uid is not None, settings.memory), "--"]
    full = [*join_command(group), *limits, *guard, *bwrap, *drop, *argv]
    fds = (*seccomp, *(d.fd for d in declared))
    words = group.words() if group else f"no cgroup: {no_group}"
    enforced = _confined(caps, uid, settings.memory, words)
    return Sandboxed(full, uid, enforced, tuple(binds), fds, group)


def _binds(
    argv: Sequence[str],
    caps: Capabilities,
    declared: Sequence[Declared],
    *,
    socket_dir: str,
    data_dir: str,
    settings: SandboxSettings,
) -> list[str]:
    """bubblewrap's mount arguments, in order: runtime (read-only), the state root hidden,
    then what belongs to the plugin (socket and data folders, declared paths)."""
    out: list[str] = []
    made: set[str] = {"/"}

    def parents(path: str) -> None:  # mount points readable by any uid, not the source's mode
        for parent in reversed(Path(path).parents):
            text = str(parent)
            if text not in made:
                made.add(text)
                out.extend(["--perms", "0755", "--dir", text])

    out += ["--ro-bind", "/usr", "/usr"]
    for link in _SYSTEM_LINKS:
        if os.path.islink(link):
            out += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            out += ["--ro-bind", link, link]
    out += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    etc = _ETC_BASE + (_ETC_NETWORK if caps.network else ())
    rules = [landlock.__file__] if _network_rules(caps) else []
    ro = [*etc, *_runtime(), *_executable(argv), *rules]
    for path in ro:
        if os.path.exists(path):
            parents(path)
            out += ["--ro-bind", os.path.realpath(path), path]
    for hidden in settings.protected:
        if any(inside(hidden, p) for p in ro):
            parents(hidden)
            out += ["--tmpfs", hidden]
    for path in (socket_dir, data_dir):
        parents(path)
        out += ["--bind", path, path]
    for item in declared:  # the objects open_declared checked, not their paths
        parents(item.path)
        out += ["--bind-fd" if item.writable else "--ro-bind-fd", str(item.fd), item.path]
    return out


@functools.cache
def _runtime() -> tuple[str, ...]:
    """What a Python plugin needs to run: the interpreter's prefixes and the SDK."""
    sdk = str(Path(pm_plugin.__file__).resolve().parent)
    found = [sys.base_prefix, sys.prefix, sdk]
    return tuple(dict.fromkeys(os.path.realpath(p) for p in found))


def _executable(argv: Sequence[str]) -> tuple[str, ...]:
    """Files the command line names (the executable, a script), when it runs from paths
    rather than a sealed copy, and the runtime does not already show them."""
    runtime = _runtime()
    return tuple(
        arg
        for arg in argv
        if arg.startswith("/")
        and not arg.startswith("/proc/")
        and os.path.isfile(arg)
        and not any(inside(arg, r) or inside(os.path.realpath(arg), r) for r in runtime)
    )


def give_tree(folder: str, uid: int) -> None:
    """Give `folder` and what is in it to `uid` (a plugin's data folder; no symlinks followed,
    and a data folder that is itself a link is refused)."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise PluginProcessError(f"the data folder {folder} is not a folder (a link?)")
    if info.st_uid == uid:
        return
    os.chown(folder, uid, uid, follow_symlinks=False)
    for top, dirs, files in os.walk(folder):
        for entry in (*dirs, *files):
            os.chown(os.path.join(top, entry), uid, uid, follow_symlinks=False)


def _network_rules(caps: Capabilities) -> list[str]:
    """The Landlock step (host.landlock) a plugin that declared network starts through:
    TCP connect only to its declared ports, no host abstract socket, no signal outside;
    nothing when it declared no network (its namespace has none) or the kernel has no
    Landlock scopes."""
    if not caps.network or landlock.abi() < landlock.SCOPES_ABI:
        return []
    tcp = "any" if caps.network_any else ",".join(map(str, caps.ports("tcp")))
    return [sys.executable, "-I", "-S", landlock.__file__, "--tcp", tcp, "--"]


def _network_words(caps: Capabilities) -> str:
    if not caps.network:
        return "none (own network namespace)"
    if landlock.abi() < landlock.SCOPES_ABI:
        return f"host network ({', '.join(caps.network)} declared; not narrowed: no Landlock)"
    if caps.network_any:
        return "host network, any destination; no host abstract sockets (Landlock)"
    tcp = ", ".join(map(str, caps.ports("tcp"))) or "none"
    udp = ", ".join(map(str, caps.ports("udp")))
    words = f"host network: TCP connect to {tcp} only, no host abstract sockets (Landlock)"
    udp_words = f"UDP {udp} declared, UDP ports not enforced" if udp else "UDP not restricted"
    return f"{words}; {udp_words} (Landlock has no UDP rules)"


def _confined(caps: Capabilities, uid: int | None, memory: int, group: str) -> Enforced:
    extra = [f"read {p}" for p in caps.read] + [f"write {p}" for p in caps.write]
    files = "own data folder, runtime read-only" + "".join(f", {e}" for e in extra)
    network = _network_words(caps)
    return Enforced(
        confined=True,
        filesystem=files,
        network=network,
        processes=("may start child processes" if caps.processes else "no child processes")
        + "; own PID namespace, no new privileges, ends with the host",
        uid=f"{uid} (own unprivileged uid)" if uid is not None else "the host's (not root)",
        limits=f"{_limits_words(uid is not None, memory)}; {group}",
    )


def _unconfined(reason: str, memory: int) -> Enforced:
    return Enforced(
        confined=False,
        filesystem="UNCONFINED: everything the host's uid can reach",
        network="UNCONFINED: host network",
        processes="UNCONFINED: may start child processes (no PID namespace); no new "
        "privileges, ends with the host",
        uid="the host's",
        limits=_limits_words(False, memory),
        reason=reason,
    )
