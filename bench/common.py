"""What every benchmark shares: the interpreter on PATH, latency statistics, the result files.

A benchmark module has a `main() -> Report` that measures, writes
`bench/results/<name>.json` (shape: {"machine", "results", "targets"}) and
`bench/results/<name>.md` with `write_report`, and prints the markdown.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PLUGINS = BENCH / "plugins"

Result = dict[str, Any]


def use_this_python() -> None:
    """Plugins start with `#!/usr/bin/env python3`: make it this interpreter (idempotent)."""
    here = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep, 1)[0] != here:
        os.environ["PATH"] = here + os.pathsep + path


def pin(pids: Sequence[int], cpus: set[int]) -> None:
    """Restrict every thread of the processes `pids` to `cpus` (threads started later
    inherit it from the thread starting them). Linux only; a vanished thread is skipped."""
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..1)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency(samples_ns: Sequence[int], **extra: Any) -> Result:
    """{p50_us, p99_us, mean_us, n, ...extra} of round-trip samples in nanoseconds."""
    ordered = sorted(samples_ns)
    return {
        "p50_us": round(percentile(ordered, 0.50) / 1000, 2),
        "p99_us": round(percentile(ordered, 0.99) / 1000, 2),
        "mean_us": round(statistics.fmean(ordered) / 1000, 2) if ordered else math.nan,
        "n": len(ordered),
        **extra,
    }


def rate(count: int, seconds: float, **extra: Any) -> Result:
    """{per_s, n, seconds, ...extra}."""
    return {
        "per_s": round(count / seconds) if seconds > 0 else 0,
        "n": count,
        "seconds": round(seconds, 3),
        **extra,
    }


def loadavg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return math.nan


def machine(**extra: Any) -> Result:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
        **extra,
    }


@dataclass(frozen=True)
class Target:
    name: str
    target: str  # for people: "<= 12x", ">= 20000/s"
    measured: float
    met: bool

    def as_json(self) -> Result:
        return {
            "name": self.name,
            "target": self.target,
            "measured": self.measured,
            "met": self.met,
        }


def at_most(name: str, measured: float, limit: float, unit: str = "") -> Target:
    return Target(name, f"<= {limit:g}{unit}", measured, bool(measured <= limit))


def at_least(name: str, measured: float, floor: float, unit: str = "") -> Target:
    return Target(name, f">= {floor:g}{unit}", measured, bool(measured >= floor))


@dataclass
class Report:
    name: str
    machine: Result
    results: dict[str, Result] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> Result:
        return {
            "machine": self.machine,
            "results": self.results,
            "targets": [t.as_json() for t in self.targets],
        }

    @property
    def all_met(self) -> bool:
        return all(t.met for t in self.targets)

    def finish(self, began: float) -> Report:
        """Record the load after the run and how long it took (`began`: perf_counter)."""
        self.machine |= {
            "loadavg_after": loadavg(),
            "bench_seconds": round(time.perf_counter() - began, 1),
        }
        return self


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def markdown(report: Report, describe: Mapping[str, str] | None = None) -> str:
    """Results (latencies and rates) and targets as markdown tables.

    A result's note column is `describe[name]` followed by the result's own "note", if any.
    """
    describe = describe or {}
    lines = [
        f"## {report.name}",
        "",
        "| measurement | p50 µs | p99 µs | per s | n | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, result in report.results.items():
        lines.append(
            "| {} | {} | {} | {} | {} | {} |".format(
                key,
                _cell(result.get("p50_us")),
                _cell(result.get("p99_us")),
                _cell(result.get("per_s")),
                _cell(result.get("n")),
                "; ".join(x for x in (describe.get(key, ""), result.get("note", "")) if x),
            )
        )
    lines += ["", "| target | wanted | measured | met |", "|---|---|---:|---|"]
    for t in report.targets:
        met = "yes" if t.met else "NO"
        lines.append(f"| {t.name} | {t.target} | {_cell(t.measured)} | {met} |")
    m = report.machine
    lines += [
        "",
        f"{m.get('cpu_count')} CPUs, Python {m.get('python')}, grpcio {m.get('grpcio')}; "
        f"1-min load {m.get('loadavg_before')} before, {m.get('loadavg_after')} after; "
        f"{m.get('bench_seconds')} s.",
    ]
    if report.notes:
        lines += ["", *(f"- {note}" for note in report.notes)]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write `path` so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_report(report: Report, describe: Mapping[str, str] | None = None) -> str:
    """Write results/<name>.json and results/<name>.md; returns the markdown."""
    text = markdown(report, describe)
    write_atomically(RESULTS / f"{report.name}.json", json.dumps(report.as_json(), indent=2) + "\n")
    write_atomically(RESULTS / f"{report.name}.md", text)
    return text
