#!/usr/bin/env python3
"""The benchmark plugin: a decider and a reporter built with pm_plugin, doing next to nothing.

Modes are the words of argv[1:] (any order, combinable):

- (none): ACCEPT for every connection; for the domain "cached.bench." with a 60 s cache
  TTL (honoured on the streamed extension only). Its reporter does nothing.
- `undecided`: the decider answers UNDECIDED (to build a chain whose last member decides).
- `no-extensions`: serve the PR's services only, so the host drives it through the unary
  DecideOnConnection (as tests/fakes/plugin.py's `no-extensions` mode).
- `slow-reporter`: the reporter sleeps 50 ms per report.
"""

from __future__ import annotations

import sys
import time

import pm_plugin
from pm_plugin import Decision, Verdict

MODES = frozenset(sys.argv[1:])
CACHED_DOMAIN = "cached.bench."
ACCEPT_CACHED = Decision(Verdict.ACCEPT, "bench", cache_ttl=60)
ACCEPT = Decision(Verdict.ACCEPT, "bench")
UNDECIDED = Decision(Verdict.UNDECIDED)


def decide(conn: pm_plugin.Connection) -> Decision:
    if conn.entity.domain == CACHED_DOMAIN:
        return ACCEPT_CACHED
    return ACCEPT


def decide_undecided(conn: pm_plugin.Connection) -> Decision:
    return UNDECIDED


def report(conn: pm_plugin.Connection) -> None:
    pass


def report_slowly(conn: pm_plugin.Connection) -> None:
    time.sleep(0.05)


def main() -> None:
    unknown = MODES - {"undecided", "no-extensions", "slow-reporter"}
    if unknown:
        sys.exit(f"unknown mode(s): {', '.join(sorted(unknown))}")
    if "no-extensions" in MODES:
        pm_plugin.default.offer_extensions = False
    pm_plugin.register_decider(decide_undecided if "undecided" in MODES else decide)
    pm_plugin.register_reporter(report_slowly if "slow-reporter" in MODES else report)
    pm_plugin.serve()


if __name__ == "__main__":
    main()
