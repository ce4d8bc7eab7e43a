"""The "write your first plugin" page stays true: its commands run, in order, as a reader
would type them (issue 15 item 4), and the answer it promises is the one the host gives."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def shell_blocks(page: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", page.read_text(), flags=re.DOTALL)


def test_the_first_plugin_page_runs_as_written(tmp_path: Path) -> None:
    page = DOCS / "first-plugin.md"
    blocks = shell_blocks(page)
    assert len(blocks) == 4
    script = "set -euo pipefail\n" + "\n".join(blocks) + "\nwait\n"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PM_PLUGINS_HOME": str(tmp_path / "home"),
        "PM_PLUGINS_KEY_PASSPHRASE": "a passphrase for the docs test",
    }
    env.pop("PM_PLUGINS_DEV_MODE", None)
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    promised = "block (by hello): tracker.example. is on the block list"
    assert f"The query prints `{promised}`" in page.read_text()
    assert promised in done.stdout
    assert done.stdout.count(" passed") == 2  # the generated test, then with the new one
    assert "2 passed" in done.stdout


def test_the_api_reference_covers_every_public_name(tmp_path: Path) -> None:
    makefile = (DOCS.parent / "Makefile").read_text()
    (modules,) = re.findall(r"^SDK_DOCS := (.+)$", makefile, flags=re.MULTILINE)
    built = subprocess.run(
        [sys.executable, "-m", "pdoc", "-o", str(tmp_path), *modules.split()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    missing = []
    for name in modules.split():
        module = importlib.import_module(name)
        page = tmp_path / (name.replace(".", "/") + ".html")
        text = page.read_text()
        for public in getattr(module, "__all__", ()):
            thing = getattr(module, public)
            if f'id="{public}"' not in text:
                missing.append(f"{name}.{public}: not in {page.name}")
            elif (inspect.isclass(thing) or inspect.isroutine(thing)) and not inspect.getdoc(thing):
                missing.append(f"{name}.{public}: no docstring")
    assert missing == []
    index = (tmp_path / "pm_plugin.html").read_text()
    for words in ("Verdicts", "Host services", "plugin.toml and capabilities", "PreAuthCheck"):
        assert words in index
