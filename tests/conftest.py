"""Shared fixtures: plugins find the venv's python3 first; no test leaves a process behind."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from loader.home import Home

if TYPE_CHECKING:
    from tests.boot_helpers import Publisher

ROOT = Path(__file__).resolve().parent.parent
FAKE_PLUGIN = ROOT / "tests" / "fakes" / "plugin.py"
EXAMPLES = ROOT / "examples" / "plugins"

# A private temp dir per session: plugin socket directories of concurrent runs never mix.
_SESSION_TMP = tempfile.mkdtemp(prefix="pm-plugins-tests-")
tempfile.tempdir = _SESSION_TMP
os.environ["TMPDIR"] = _SESSION_TMP

# Plugin executables start with `#!/usr/bin/env python3`: it must be this interpreter.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll `predicate` every 20 ms until it is true (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _children() -> set[int]:
    me = str(os.getpid())
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me and fields[0] != "Z":  # ppid, state
            found.add(int(entry.name))
    return found


def _socket_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("pm-plugins-*"))


@pytest.fixture(autouse=True)
def no_leftover_processes_or_sockets() -> Iterator[None]:
    """Every test ends with no live child process of ours (plugins or their children) and no
    plugin socket directory left behind."""
    before, dirs_before = _children(), _socket_dirs()
    yield
    after = _children() - before
    assert not after, f"processes left behind: {sorted(after)}"
    dirs_after = {d for d in _socket_dirs() - dirs_before if d.exists()}
    assert not dirs_after, f"socket directories left behind: {sorted(map(str, dirs_after))}"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """An empty state root (0700) in the test's own folder."""
    h = Home(tmp_path / "home")
    h.ensure()
    return h


@pytest.fixture
def publisher(home: Home) -> Publisher:
    """A new publisher key, trusted as official in `home`."""
    from tests.boot_helpers import new_publisher, trust

    p = new_publisher()
    trust(home, p)
    return p
