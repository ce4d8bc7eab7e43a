"""The kernel filter that keeps a plugin from starting child processes.

Why this exists: a plugin's signed capabilities say whether it may start child processes
(`processes`, false unless declared). A limit on the number of processes cannot say that (a
plugin's gRPC server needs threads, which the kernel counts as processes), so a plugin that
did not declare `processes` starts under a seccomp filter that bubblewrap installs (its
`--seccomp FD`) right before the plugin's first instruction: `fork`, `vfork` and a `clone`
without `CLONE_THREAD` fail with EPERM, `clone3` fails with ENOSYS (so the C library falls
back to `clone`, whose flags a classic BPF filter can read), and a system call of another
architecture or ABI (x32) ends the process. Threads are untouched.

The program is classic BPF, as `struct sock_filter` entries (see seccomp(2)); no library of
Python's builds one without a C extension, and this one is fifteen instructions.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

from host.errors import PluginProcessError

__all__ = ["no_children_program", "program_fd"]

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
_NR, _ARCH, _ARG0 = 0, 4, 16
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45  # BPF_JMP | BPF_K | (JEQ, JGE, JSET)
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_ERRNO = 0x00050000
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000

#: Per machine: (AUDIT_ARCH_*, {name: number}) of the system calls that make processes.
_MACHINES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {"clone": 56, "fork": 57, "vfork": 58, "clone3": 435}),
    "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435}),
}


def no_children_program(machine: str | None = None) -> bytes:
    """The filter program for `machine` (default: this one's), as bytes for `--seccomp`.

    Raises:
        PluginProcessError: no filter is known for the machine.
    """
    machine = machine or platform.machine()
    if machine not in _MACHINES:
        raise PluginProcessError(
            f"child processes cannot be prevented on {machine}: no seccomp filter for it"
        )
    arch, numbers = _MACHINES[machine]
    # (code, true-label, false-label, k): labels resolve to jump offsets below
    code: list[tuple[int, str, str, int]] = [
        (_LD_ABS, "", "", _ARCH),
        (_JEQ, "", "kill", arch),
        (_LD_ABS, "", "", _NR),
        (_JGE, "kill", "", _X32_BIT),
    ]
    code += [(_JEQ, "deny", "", numbers[n]) for n in ("fork", "vfork") if n in numbers]
    code += [(_JEQ, "nosys", "", numbers["clone3"]), (_JEQ, "clone", "allow", numbers["clone"])]
    labels = {"clone": len(code)}
    code += [(_LD_ABS, "", "", _ARG0), (_JSET, "allow", "deny", _CLONE_THREAD)]
    returns = {"allow": _ALLOW, "deny": _ERRNO | errno.EPERM, "nosys": _ERRNO | errno.ENOSYS}
    returns["kill"] = _KILL_PROCESS
    for label in returns:
        labels[label] = len(code) + list(returns).index(label)
    out = bytearray()
    for index, (op, true, false, k) in enumerate(code):
        jt = labels[true] - index - 1 if true else 0
        jf = labels[false] - index - 1 if false else 0
        out += struct.pack("=HBBI", op, jt, jf, k)
    for value in returns.values():
        out += struct.pack("=HBBI", _RET, 0, 0, value)
    return bytes(out)


def program_fd() -> int:
    """A fresh descriptor holding the program, read from its start (bubblewrap reads it to
    the end, so every start needs its own); the caller closes it once the plugin started."""
    fd = os.memfd_create("pm-plugins-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, no_children_program())
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd
