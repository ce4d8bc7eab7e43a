"""A package a plugin left in its data folder, copied out without trusting the folder.

Why this exists: RegisterPlugin's package lies in the registering plugin's own data folder
(`register/<name>/`), which that plugin writes and may change while the host reads it. This
copies it into a folder only the host can reach, so the installer verifies and installs the
copy, never the live path: every component is opened without following a symlink (`O_NOFOLLOW`,
relative to the folder above, so no component can be swapped for a link between a look and
an open), only regular files with one link each are copied (no FIFO to hang on, no hard link
to someone else's file), at most 8 of them and at most the loader's own bounds in all (512 MiB
for an artifact plus 1 MiB for a manifest), counted while reading (a file may grow).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from loader.boot import MAX_ARTIFACT_BYTES, MAX_MANIFEST_BYTES
from loader.fields import show

__all__ = ["MAX_PACKAGE_BYTES", "MAX_PACKAGE_FILES", "REGISTER_FOLDER", "copy_package"]

#: Where in its data folder a registrar puts a package: `register/<name>/`.
REGISTER_FOLDER = "register"
#: The most files a package folder may hold (a package has two, a source folder a few).
MAX_PACKAGE_FILES = 8
#: The most bytes a package's files may hold in all: the loader's own bounds.
MAX_PACKAGE_BYTES = MAX_ARTIFACT_BYTES + MAX_MANIFEST_BYTES
#: The file names a package holds: a manifest's `artifact.filename` rule (loader.manifest).
_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,128}")


def copy_package(data_dir: str, name: str, into: Path) -> Path:
    """Copy `<data_dir>/register/<name>/` into `into/<name>/`, following no symlink, within the
    bounds above; returns the copy. RuntimeError: there is no package; ValueError: what is
    there is not a plain folder of plain files within the bounds."""
    shown = f"{REGISTER_FOLDER}/{name}"
    copy = into / name
    copy.mkdir(mode=0o700)
    opened: list[int] = []
    try:
        opened.append(_open_folder(data_dir, None, "its data folder", shown))
        opened.append(_open_folder(REGISTER_FOLDER, opened[-1], REGISTER_FOLDER, shown))
        opened.append(_open_folder(name, opened[-1], shown, shown))
        budget = MAX_PACKAGE_BYTES
        with os.scandir(opened[-1]) as found:  # scandir reads a duplicate of the descriptor
            for count, item in enumerate(found, 1):
                if count > MAX_PACKAGE_FILES:
                    raise ValueError(f"{shown} holds more than {MAX_PACKAGE_FILES} files")
                budget -= _copy_file(opened[-1], item.name, copy, budget, shown)
    except (ValueError, RuntimeError) as err:
        raise type(err)(f"refusing to register {name}: {err}") from err
    finally:
        for fd in opened:
            os.close(fd)
    return copy


def _open_folder(path: str, dir_fd: int | None, what: str, shown: str) -> int:
    """A descriptor of the folder `path` (relative to `dir_fd`), never through a symlink."""
    try:
        info = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise RuntimeError(
            f"there is no package at {shown} in the plugin's data folder ({what} is missing); "
            "write the package there before calling RegisterPlugin"
        ) from None
    except OSError as err:
        raise ValueError(f"{what} cannot be read ({err.strerror})") from err
    if stat.S_ISLNK(info.st_mode):
        raise ValueError(f"{what} is a symbolic link; the host follows none in a plugin's folder")
    if not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{what} is not a folder; a package is a folder (artifact and manifest)")
    try:
        return os.open(
            path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError as err:  # replaced by a link since the look: the same refusal
        raise ValueError(f"{what} is not a folder, or is a symbolic link ({err.strerror})") from err


def _copy_file(dir_fd: int, name: str, copy: Path, budget: int, shown: str) -> int:
    """Copy one regular file of the package (at most `budget` bytes); its size."""
    what = f"{shown}/{show(name, 80)}"
    if not _PLAIN.fullmatch(name):  # what no manifest or plugin.toml can name; nor a message
        raise ValueError(f"{what} is not a plain file name (A-Z a-z 0-9 . _ -)")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # no hang on a FIFO
    try:
        source = os.open(name, flags, dir_fd=dir_fd)
    except OSError as err:
        raise ValueError(
            f"{what} cannot be opened without following a link ({err.strerror})"
        ) from err
    try:
        info = os.fstat(source)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{what} is not a regular file; a package holds only files")
        if info.st_nlink > 1:
            raise ValueError(f"{what} has other hard links; put a copy of the file there")
        total = info.st_size
        if total <= budget:
            target = os.open(
                copy / name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
            with os.fdopen(target, "wb") as out:
                total = 0
                while total <= budget and (chunk := os.read(source, 1 << 20)):
                    total += len(chunk)
                    out.write(chunk)
        if total > budget:  # as stat said, or grown while we read
            raise ValueError(
                f"{shown} is larger than the {MAX_PACKAGE_BYTES} bytes a package may be"
            )
        return total
    finally:
        os.close(source)
