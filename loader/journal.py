"""One commit point for `plugins.json` and `plugins.lock` together.

Why this exists: an install or upgrade changes two files, and a crash between two renames
would leave the new plugins.json with the old lock (or the reverse): a mix. Instead the
installer writes both new contents into one journal file, `.pending.json`, atomically;
that rename is the commit. It then replaces the two files and deletes the journal.

Whoever reads the state root next (the loader at boot, any command) first calls
`roll_forward`, which finishes a committed change if a crash interrupted it. Before the
journal exists the old state is intact; after it exists the new state is certain. Both
run under the state root's file lock, so a reader never applies a journal that a newer
change has already replaced.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from keys import strict_json
from keys._fs import write_atomic
from keys.errors import StrictJSONError
from loader.errors import LoaderError
from loader.home import Home

JOURNAL = ".pending.json"


class JournalError(LoaderError):
    """The journal of an interrupted change cannot be read."""


def journal_path(home: Home) -> Path:
    return home.root / JOURNAL


@contextlib.contextmanager
def state_lock(home: Home) -> Iterator[None]:
    """Hold the state root's exclusive lock: one change at a time."""
    home.ensure()
    fd = os.open(home.mutation_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def changing(home: Home) -> Iterator[None]:
    """The exclusive lock, with any interrupted change finished first (under the lock, so
    no other change can slip in between)."""
    with state_lock(home):
        if journal_path(home).exists():
            _apply(home)
        yield


@contextlib.contextmanager
def reading(home: Home) -> Iterator[None]:
    """A consistent state to read (boot, verify): the shared lock held and no interrupted
    change pending, so no change commits or deletes a release while the caller reads.

    It creates nothing: a state root that does not exist or cannot be written (a read-only
    mount) is read without the lock, as it is.
    """
    while True:
        try:
            fd = os.open(home.mutation_lock, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1  # no lock file (nothing was ever installed) or unreadable: just read
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_SH)
            if not journal_path(home).exists():
                yield
                return
        finally:
            if fd >= 0:
                os.close(fd)
        roll_forward(home)  # exclusive; then look again under the shared lock


def record(home: Home, plugins_json: bytes, lock: bytes) -> None:
    """The commit point: the journal, written atomically. Hold `state_lock`. Once this
    returns the change is certain; `apply` (or the next reader) finishes it."""
    doc = {
        "plugins.json": base64.b64encode(plugins_json).decode(),
        "plugins.lock": base64.b64encode(lock).decode(),
    }
    write_atomic(journal_path(home), json.dumps(doc).encode(), 0o600)


def apply(home: Home) -> None:
    """Finish the recorded change: replace both files, drop the journal. Hold the lock."""
    _apply(home)


def commit(home: Home, plugins_json: bytes, lock: bytes) -> None:
    """`record`, then `apply`. Hold `state_lock`."""
    record(home, plugins_json, lock)
    _apply(home)


def roll_forward(home: Home) -> bool:
    """Finish a committed change a crash interrupted; True if there was one."""
    if not journal_path(home).exists():
        return False
    with state_lock(home):
        if not journal_path(home).exists():
            return False
        _apply(home)
        return True


def _apply(home: Home) -> None:
    path = journal_path(home)
    source = str(path)
    try:
        doc = strict_json.load(path, source=source, max_bytes=8 << 20)
        strict_json.expect(doc, dict, where=source, what="the document")
        contents = {
            name: base64.b64decode(strict_json.require(doc, name, str, where=source), validate=True)
            for name in ("plugins.json", "plugins.lock")
        }
    except (StrictJSONError, ValueError) as err:
        raise JournalError(
            f"{source}: the journal of an interrupted install cannot be read ({err}); "
            f"remove it to keep the state before that install"
        ) from err
    mode = 0o644
    with contextlib.suppress(FileNotFoundError):
        mode = home.plugins_json.stat().st_mode & 0o777
    write_atomic(home.plugins_json, contents["plugins.json"], mode)
    write_atomic(home.lock_file, contents["plugins.lock"], 0o644)
    path.unlink()
