"""The files and folders a plugin declared, checked and opened without following a symlink.

Why this exists: bubblewrap runs as root under a root host and follows symlinks in a bind
source. A plugin that may write a declared folder can plant a link there (`W/sub ->
../state`) and, at its next start, have the state root mounted read-write if `W/sub` is
declared too. So at every start each declared path is refused when it is private (the state
root, the host's temporary folder, the plugin's own data and socket folders), when it lies
inside another declared path the plugin may write, or when any component of it is a symlink;
and it is opened here with `openat2(RESOLVE_NO_SYMLINKS)` as an `O_PATH` descriptor, which
bubblewrap binds (`--bind-fd`): the mount is the object that was checked, whatever the path
names a moment later. A declared path that does not exist is skipped, as `--bind-try` would.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from host.errors import PluginProcessError
from loader.capabilities import Capabilities

__all__ = ["Declared", "close_all", "inside", "open_declared", "open_path"]

_OPENAT2 = 437  # the same number on every architecture
_RESOLVE_NO_SYMLINKS = 0x04
_AT_FDCWD = -100


@dataclass(frozen=True)
class Declared:
    """One declared path, open: the descriptor to bind, where, and whether writable."""

    fd: int
    path: str
    writable: bool


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def open_declared(
    name: str, caps: Capabilities, *, protected: Sequence[str], own: Sequence[str]
) -> list[Declared]:
    """Check and open every declared path (module docstring); the caller closes the fds.

    Raises:
        PluginProcessError: one sentence naming the path and why it is refused.
    """
    _check(name, caps, protected, own)
    opened: list[Declared] = []
    try:
        for path, writable in [*((p, False) for p in caps.read), *((p, True) for p in caps.write)]:
            fd = _open_no_symlinks(name, path)
            if fd is not None:
                opened.append(Declared(fd, path, writable))
    except BaseException:
        for item in opened:
            os.close(item.fd)
        raise
    return opened


def _check(name: str, caps: Capabilities, protected: Sequence[str], own: Sequence[str]) -> None:
    # each private folder as named and as it resolves: a path reached another way is caught
    private = [q for p in (*protected, *own) for q in dict.fromkeys((p, os.path.realpath(p)))]
    temporaries = dict.fromkeys((tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir())))
    for path in (*caps.read, *caps.write):
        hit = next((p for p in private if inside(p, path) or inside(path, p)), None)
        hit = hit or next((t for t in temporaries if inside(t, path)), None)
        if hit is not None:
            raise PluginProcessError(
                f"plugin {name} cannot start: it declares access to {path}, which would reach "
                f"the host's private files in {hit}"
            )
        outer = next((w for w in caps.write if w != path and inside(path, w)), None)
        if outer is not None:
            raise PluginProcessError(
                f"plugin {name} cannot start: it declares {path} inside {outer}, which it may "
                "write (it could turn the inner path into a link to anywhere)"
            )


def open_path(path: str) -> int:
    """An O_PATH descriptor of `path`, resolved with no symlink in any component (openat2
    RESOLVE_NO_SYMLINKS); usable as the `dir_fd` of the *at system calls.

    Raises:
        OSError: ELOOP for a symlink on the way, ENOENT, ...
    """
    how = struct.pack("=QQQ", os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE_NO_SYMLINKS)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(
        libc.syscall(
            ctypes.c_long(_OPENAT2),
            ctypes.c_int(_AT_FDCWD),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_char_p(how),
            ctypes.c_size_t(len(how)),
        )
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _open_no_symlinks(name: str, path: str) -> int | None:
    """`open_path`, with a plugin's refusal sentences; None if the path does not exist."""
    try:
        return open_path(path)
    except OSError as failed:
        err = failed.errno or errno.EIO
    if err == errno.ENOENT:
        return None
    if err == errno.ELOOP:
        raise PluginProcessError(
            f"plugin {name} cannot start: its declared path {path} leads through a symlink "
            f"(to {os.path.realpath(path)}); declare the real path"
        )
    raise PluginProcessError(
        f"plugin {name} cannot start: its declared path {path} cannot be opened "
        f"({os.strerror(err)})"
    )


def close_all(opened: Sequence[Declared]) -> None:
    for item in opened:
        with contextlib.suppress(OSError):
            os.close(item.fd)
