"""`make bench`: run every benchmark of bench/, in a fixed order, and print their tables.

Each benchmark writes bench/results/<name>.json and <name>.md (see bench.common). The exit
status is 0 when every benchmark ran, whether or not its targets were met (the tables and
JSON say which were); a benchmark that fails to run makes it 1, after the others ran.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable

from bench import author, face, interop, loader, registry, registry_load, runtime, sandbox
from bench.common import Report, use_this_python

Reports = dict[str, Report]

#: Every benchmark, in the order they run: (name, entry point given the reports so far, so a
#: later benchmark can compare with figures measured earlier in the same run).
BENCHMARKS: tuple[tuple[str, Callable[[Reports], Report]], ...] = (
    ("runtime", lambda done: runtime.main()),
    ("interop", lambda done: interop.main(done.get("runtime"))),
    ("loader", lambda done: loader.main()),
    ("registry", lambda done: registry.main()),
    ("registry_load", lambda done: registry_load.main()),
    ("sandbox", lambda done: sandbox.main()),
    ("author", lambda done: author.main()),
    ("face", lambda done: face.main()),
)


def main() -> int:
    use_this_python()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # a reporter left with reports when its plugin stops logs one warning per report
    logging.getLogger("pm_plugins.dispatch").setLevel(logging.ERROR)
    failed: list[str] = []
    missed: list[str] = []
    done: Reports = {}
    for name, run in BENCHMARKS:
        print(f"# bench: {name}", flush=True)
        try:
            report = run(done)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        done[name] = report
        missed += [f"{name}: {t.name}" for t in report.targets if not t.met]
        print(flush=True)
    if missed:
        print("targets not met:\n" + "\n".join(f"  - {m}" for m in missed), flush=True)
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
