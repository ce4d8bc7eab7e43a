"""Interop benchmark: one decision's round trip across the Go/Python pairings of host and plugin.

Three pairings, each timed over the same number of sequential decisions on one connection the
decider ACCEPTs (`/usr/bin/curl` to `example.com.`), after the same warm-up:

- `go_host_go_decider`: the PR's own stack (the fallback Go host and Go decider on go-plugin
  v1.5.1, see tests/interop/gobuild.py), timed by the Go host (`-bench-decide N`);
- `go_host_py_allowlist`: the same Go host driving our Python `examples/plugins/allowlist`;
- `py_host_go_decider`: our `PluginHost` driving the Go decider, timing `PluginHost.decide`
  (the decider chain around the PR's unary DecideOnConnection).

p50 and p99 are nearest-rank percentiles over every timed call, in microseconds, as the Go
host computes them. `run()` returns `{"results": {pairing: {...}}}`, or
`{"skipped": ...}` when `go` is not on PATH. Run from the repository root:
`python -m bench.interop`.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Report, at_most, loadavg, machine, write_report
from host.runtime import PluginHost, PluginSpec
from host.services.backchannel import HostServices
from pm_plugin.wire.portmaster import network_pb2
from tests.interop import gobuild

#: Timed decisions per pairing.
N = 3000
#: Untimed decisions first (the Go host's `-bench-decide` always makes 200).
WARMUP = 200
ALLOWLIST = gobuild.REPO / "examples" / "plugins" / "allowlist" / "plugin"
#: The connection every pairing decides on; both deciders ACCEPT it.
BINARY, DOMAIN = "/usr/bin/curl", "example.com."
VERDICT_ACCEPT = 2
HOST_TIMEOUT = 600.0


def run(n: int = N) -> dict[str, Any]:
    """Measure every pairing with `n` timed decisions each."""
    if not gobuild.go_available():
        return {"skipped": "go is not on PATH"}
    peers = gobuild.build_peers()
    results: dict[str, Any] = {
        "go_host_go_decider": _go_host(peers["host"], peers["decider"], n),
        "go_host_py_allowlist": _go_host(peers["host"], ALLOWLIST, n),
        "py_host_go_decider": _our_host(peers["decider"], n),
    }
    return {"results": results}


def _env() -> dict[str, str]:
    """This environment, the venv's bin first: the allowlist's shebang finds this python."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _go_host(host: Path, plugin: Path, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pm-bench-interop-") as basedir:
        proc = subprocess.run(
            [
                str(host),
                "-plugin",
                str(plugin),
                "-name",
                plugin.parent.name if plugin.name == "plugin" else plugin.name,
                "-types",
                "decider",
                "-basedir",
                basedir,
                "-bench-decide",
                str(n),
            ],
            capture_output=True,
            text=True,
            timeout=HOST_TIMEOUT,
            env=_env(),
            check=False,
        )
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        report = {}
    bench = report.get("bench")
    if proc.returncode != 0 or not isinstance(bench, dict) or report.get("errors"):
        raise RuntimeError(
            f"the Go host failed to bench {plugin} (exit {proc.returncode}): "
            f"{json.dumps(report.get('errors'))}\n{proc.stdout}\n{proc.stderr}"
        )
    return {
        "p50_us": bench["p50_us"],
        "p99_us": bench["p99_us"],
        "mean_us": bench["mean_us"],
        "n": bench["n"],
        "warmup": bench["warmup"],
        "errors": bench["errors"],
    }


def _our_host(decider: Path, n: int) -> dict[str, Any]:
    conn = network_pb2.Connection(id="bench")
    conn.entity.domain = DOMAIN
    conn.entity.ip = "198.51.100.7"
    conn.entity.port = 443
    conn.process.binary_path = BINARY
    with tempfile.TemporaryDirectory(prefix="pm-bench-interop-") as basedir:
        host = PluginHost(HostServices(), base_directory=basedir)
        try:
            host.add(PluginSpec(name="decider", argv=(str(decider),), types=("decider",)))
            failed = host.start_all()
            if failed:
                raise RuntimeError(f"our host could not start the Go decider: {failed}")
            for _ in range(WARMUP):
                host.decide(conn)
            samples: list[int] = []
            errors = 0
            for _ in range(n):
                started = time.perf_counter_ns()
                verdict = host.decide(conn)
                samples.append(time.perf_counter_ns() - started)
                if verdict.verdict != VERDICT_ACCEPT or verdict.plugin != "decider":
                    errors += 1
        finally:
            host.stop_all()
    samples.sort()
    return {
        "p50_us": round(_nearest_rank(samples, 0.50) / 1000, 1),
        "p99_us": round(_nearest_rank(samples, 0.99) / 1000, 1),
        "mean_us": round(statistics.fmean(samples) / 1000, 1),
        "n": n,
        "warmup": WARMUP,
        "errors": errors,
    }


def _nearest_rank(ordered: list[int], q: float) -> float:
    if not ordered:
        return math.nan
    rank = min(max(1, math.ceil(q * len(ordered))), len(ordered))
    return float(ordered[rank - 1])


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))


#: The Python-to-Python figures of the runtime benchmark that issue #8 compares with Go.
PY_UNARY, PY_STREAMED = "unary_host_decide", "streamed_host_decide"


def main(runtime: Report | None = None) -> Report:
    """Measure the pairings and write bench/results/interop.{json,md}, with the targets
    that compare our Python stack (from `runtime`, measured in the same run) to Go's."""
    started = time.monotonic()
    report = Report("interop", machine(loadavg_before=loadavg()))
    measured = run()
    if "skipped" in measured:
        report.notes.append(f"skipped: {measured['skipped']}")
    else:
        report.results.update(measured["results"])
    if runtime is not None:
        for key in (PY_UNARY, PY_STREAMED):
            if key in runtime.results:
                report.results[f"py_host_py_plugin_{key}"] = runtime.results[key]
    go = report.results.get("go_host_go_decider", {}).get("p50_us")
    unary = report.results.get(f"py_host_py_plugin_{PY_UNARY}", {}).get("p50_us")
    streamed = report.results.get(f"py_host_py_plugin_{PY_STREAMED}", {}).get("p50_us")
    if go and unary:
        report.targets.append(
            at_most("python unary p50 / go stack p50", round(unary / go, 2), 2.5, "x")
        )
    if go and streamed:
        report.targets.append(
            at_most("python streamed p50 / go stack p50", round(streamed / go, 2), 1.5, "x")
        )
    report.machine.update(
        loadavg_after=loadavg(), bench_seconds=round(time.monotonic() - started, 1)
    )
    print(write_report(report), end="", flush=True)
    return report
