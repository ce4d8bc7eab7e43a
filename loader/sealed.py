"""Run exactly the bytes that were verified: a sealed in-memory copy of a plugin executable.

Why this exists: verifying a file by path and then executing the same path leaves a window in
which the file can be swapped (check-then-use). The loader closes it in two steps:

1. `read_once(path, max_bytes)` reads the artifact once, through one descriptor opened with
   `O_NOFOLLOW` (a symlink is refused) and checked with `fstat` to be a regular file, bounded
   in size. The caller verifies these bytes (digest, signature) and never looks at the path
   again.
2. `seal(data, name)` copies the verified bytes into an anonymous `memfd`, then seals it
   against writes, shrinking, growing, mode changes (where the kernel knows `F_SEAL_EXEC`)
   and further seal changes. Nobody, not even this process, can change those bytes any more,
   and no path on disk names them.

The plugin is started by executing `/proc/self/fd/N`, where N is the memfd's descriptor
number, passed to the child with `pass_fds=(N,)`. `subprocess` keeps exactly the `pass_fds`
open in the child and clears their close-on-exec flag there (the host keeps its copy
close-on-exec, so other children never inherit it). In the child, `/proc/self` is the child,
so the path names its own inherited copy of the sealed memfd:

- an ELF binary is executed from the memfd directly;
- a `#!` script also works: the kernel starts the interpreter with the path `/proc/self/fd/N`
  as the script argument (`#!/usr/bin/env python3` -> `env python3 /proc/self/fd/N ...`).
  `env` and the interpreter are exec'd in the same process, which still holds descriptor N
  (it is not close-on-exec there), so the interpreter reopens the same sealed memfd. This is
  why the descriptor must be inherited and why `fexecve`/`execveat` on a close-on-exec
  descriptor would not do for scripts (the interpreter would find `/dev/fd/N` closed).
  `/dev/fd/N` works too where `/dev/fd` links to `/proc/self/fd`; `/proc/self/fd/N` is used
  because it needs only `/proc`.

Caveats: the plugin keeps descriptor N open (read-only, see below) for its lifetime; a Python
script run this way gets `__file__ == "/proc/self/fd/N"` and, because Python resolves the
script path's symlink (to `/memfd:NAME (deleted)`), `sys.path[0] == "/"`. The interpreter named
by a `#!` line, and anything it imports, are outside this guarantee: only the script's own
bytes are pinned.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from loader.errors import LoaderError

F_ADD_SEALS: int = getattr(fcntl, "F_ADD_SEALS", 1033)
F_GET_SEALS: int = getattr(fcntl, "F_GET_SEALS", 1034)
F_SEAL_SEAL: int = getattr(fcntl, "F_SEAL_SEAL", 0x0001)
F_SEAL_SHRINK: int = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)
F_SEAL_GROW: int = getattr(fcntl, "F_SEAL_GROW", 0x0004)
F_SEAL_WRITE: int = getattr(fcntl, "F_SEAL_WRITE", 0x0008)
#: Linux >= 6.3: the mode (and so the exec bits) can no longer be changed.
F_SEAL_EXEC: int = getattr(fcntl, "F_SEAL_EXEC", 0x0020)
#: Linux >= 6.3: the memfd is executable even under `vm.memfd_noexec=1`.
MFD_EXEC: int = getattr(os, "MFD_EXEC", 0x0010)

#: The seals every sealed executable carries.
REQUIRED_SEALS = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL

_MAX_NAME = 200  # memfd names are limited to 249 bytes; this is only a label in /proc


class SealedExecutable:
    """A sealed, read-only, anonymous copy of verified executable bytes.

    Start it with `argv` (followed by the plugin's own arguments) and `pass_fds`, e.g.
    `PluginProcess(name, (*sealed.argv, "serve"), pass_fds=sealed.pass_fds)`. It may be closed
    once the process has started: the child holds its own copy of the descriptor.
    """

    def __init__(self, fd: int, name: str, size: int) -> None:
        self._fd: int | None = fd
        self.name = name
        self.size = size

    @property
    def fd(self) -> int:
        """The read-only descriptor of the sealed memfd (close-on-exec in this process)."""
        if self._fd is None:
            raise RuntimeError(f"sealed executable {self.name} is closed")
        return self._fd

    @property
    def argv(self) -> tuple[str]:
        """The path to execute, which names the child's inherited copy of `fd`."""
        return (f"/proc/self/fd/{self.fd}",)

    @property
    def pass_fds(self) -> tuple[int]:
        """The descriptors the child must inherit for `argv` to resolve."""
        return (self.fd,)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Close this process's descriptor; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> SealedExecutable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"SealedExecutable({self.name!r}, {self.size} bytes, {state})"


def read_once(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path` (not a symlink), at most `max_bytes` of them.

    Read through one descriptor, so the bytes returned are those of one file; verify them and
    pass them to `seal`, never reopening `path`.

    Raises:
        LoaderError: `path` is missing, a symlink, not a regular file, unreadable or too large.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # no hang on a FIFO
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LoaderError(f"plugin executable {path} is a symbolic link") from err
        raise LoaderError(f"plugin executable {path} cannot be opened: {err.strerror}") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LoaderError(f"plugin executable {path} is not a regular file")
        if info.st_size > max_bytes:
            raise LoaderError(f"plugin executable {path} is larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:  # the file may grow while we read: read one byte past
            chunk = os.read(fd, min(max_bytes + 1 - total, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise LoaderError(f"plugin executable {path} cannot be read: {err.strerror}") from err
    finally:
        os.close(fd)
    if total > max_bytes:
        raise LoaderError(f"plugin executable {path} is larger than {max_bytes} bytes")
    return b"".join(chunks)


def seal(data: bytes, name: str) -> SealedExecutable:
    """A sealed in-memory copy of `data`, bytes the caller has already verified.

    Raises:
        LoaderError: the kernel offers no sealed memfd (not Linux, or too old).
    """
    label = name.replace("/", "_")[:_MAX_NAME] or "plugin"
    try:
        rw = _memfd(label)
    except OSError as err:
        raise LoaderError(f"plugin {name} cannot be sealed in memory: {err.strerror}") from err
    try:
        _write_all(rw, data)
        os.fchmod(rw, 0o555)  # sealed: a plugin under its own uid may reopen it, none may write
        _add_seals(rw)
        sealed = fcntl.fcntl(rw, F_GET_SEALS)
        if sealed & REQUIRED_SEALS != REQUIRED_SEALS:  # pragma: no cover - kernel contract
            raise LoaderError(f"plugin {name} could not be sealed in memory")
        # The child inherits a read-only descriptor (exec reopens the memfd anyway).
        ro = os.open(f"/proc/self/fd/{rw}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise LoaderError(f"plugin {name} cannot be sealed in memory: {err.strerror}") from err
    finally:
        os.close(rw)
    return SealedExecutable(ro, name, len(data))


def _memfd(label: str) -> int:
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        return os.memfd_create(label, flags | MFD_EXEC)
    except OSError as err:
        if err.errno != errno.EINVAL:  # a kernel before 6.3 does not know MFD_EXEC
            raise
    return os.memfd_create(label, flags)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _add_seals(fd: int) -> None:
    with contextlib.suppress(OSError):  # a kernel before 6.3 does not know F_SEAL_EXEC
        fcntl.fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS | F_SEAL_EXEC)
        return
    fcntl.fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS)
