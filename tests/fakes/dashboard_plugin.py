#!/usr/bin/env python3
"""A plugin for the dashboard's tests whose every string is hostile HTML, selected by argv[1].

Modes:
- options: registers one option of each type whose name, description, help and default are
  HTML that would run script if a page parsed it, then shows a notification made of the same
  (title, message, action texts) and writes the action the user picked, which notify()
  returned, to `answer.json` in its data folder;
- broken: writes HTML to stderr and exits before its handshake, so the host's reason for it
  (with its last stderr lines) is HTML too.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import pm_plugin
from pm_plugin import Verdict

MODE = sys.argv[1] if len(sys.argv) > 1 else "options"
#: Each sets window.__pwned (or loads another origin) if it is ever parsed as HTML.
SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 1">'
LINK = '<a href="http://evil.example/">click</a>'


def register_and_ask() -> None:
    plugin = pm_plugin.default
    cfg = plugin.config()
    cfg.register_option("greeting", IMG, name=f"Greeting {IMG}", description=SCRIPT, help=LINK)
    cfg.register_option("limit", 3, name="Limit", description=f"A number {SCRIPT}")
    cfg.register_option("verbose", False, name="Verbose", description="A switch")
    cfg.register_option("words", [SCRIPT, IMG], name="Words", description="A list")

    def ask() -> None:
        answer = plugin.notify(f"Title {IMG}", f"Message {SCRIPT}", actions=[("ok", f"OK {IMG}")])
        path = os.path.join(plugin.base_directory, "answer.json")
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump({"answer": answer}, out)
        os.replace(path + ".tmp", path)

    threading.Thread(target=ask, daemon=True).start()


def main() -> None:
    if MODE == "broken":
        sys.stderr.write(f"broken {IMG} {SCRIPT}\n")
        sys.stderr.flush()
        sys.exit(1)
    pm_plugin.on_init(register_and_ask)
    pm_plugin.register_decider(lambda conn: Verdict.UNDECIDED)
    pm_plugin.serve()


if __name__ == "__main__":
    main()
