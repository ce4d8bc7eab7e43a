"""Registry load benchmark: many TUF clients against one static server of one index.

Why it exists: bench/registry.py measures one client; sizing a registry needs what the *server*
side costs per client (requests, bytes, CPU) and how that scales to a fleet. Measured in one run:

- the index: bench/registry.py's 10,000 releases (2,500 plugins x 4 versions) with
  ``HASH_BINS`` hash bins, built and published once (its builder functions, imported);
- the server: ``bench/static_server.py`` (``ThreadingHTTPServer``, HTTP/1.1), ONE separate
  process serving ``published/``, pinned to CPU 0, the clients (this process) to CPU 1
  (with 2+ CPUs). Server CPU: utime+stime from ``/proc/<pid>/stat`` around each wave;
  requests, statuses and bytes written (status line, headers, body): its own counters;
- cold wave: ``CLIENTS`` clients, each a fresh cache (a temp folder) trusting only root
  v1: ``RegistryClient.bootstrap`` + ``refresh()`` (the refresh time), ``find(name)``
  (``<name>/releases.json`` through its hash bin) and ``download`` of the newest artifact
  (the refresh+install time), through ``RequestsFetcher``, ``THREADS`` at a time; no
  client starts after ``COLD_BUDGET_S`` seconds;
- no-change wave (the hourly case): every completed client refreshes again on its cache,
  nothing published in between (a 404 root probe and timestamp.json);
- per client: requests and bytes as the server counted them (body bytes as the client
  did), server and client CPU ms; p50/p99 times; clients/s; errors.

The notes turn the per-client figures into a day of 1 million clients refreshing hourly
against a CDN; that part is arithmetic, not measurement. `python -m bench.registry_load`:
under a minute on 2 CPUs (the budgets bound it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    Report,
    Result,
    Target,
    at_least,
    at_most,
    latency,
    loadavg,
    machine,
    pin,
    use_this_python,
    write_report,
)
from bench.registry import HASH_BINS, PLUGIN_COUNT, VERSIONS, build, make_releases, plugin_name
from bench.static_server import ServerProcess
from index import IndexRepo
from keys import ed25519
from registry_client.tuf_client import RegistryClient, RequestsFetcher

NAME = "registry_load"
CLIENTS = 1000
THREADS = 50
COLD_BUDGET_S = 90.0
WARM_BUDGET_S = 45.0
SERVER_CPUS, CLIENT_CPUS = {0}, {1}

# -- on paper: the fleet and the CDN (assumptions, stated in the notes) --
FLEET = 1_000_000
REFRESHES_PER_DAY = 24
INSTALL_SHARE = 0.01  # clients that install one plugin (a cold refresh+install) per day
EDGES = 300  # CDN edge locations that each ask the origin on their own
EDGE_TTL_S = 60  # max-age of timestamp.json (and of the root probe's 404) at the edge

# -- targets --
TARGET_WARM_REQUESTS = 2  # the root probe and timestamp.json
TARGET_WARM_BYTES = 2_000  # two small responses with their headers
# One bin holds 22,500 / 512 = 44 targets (artifact and manifest per release, releases.json
# per plugin): at <= 1 KB each and x2 for an unlucky bin, 88 KB; the snapshot lists 514
# roles at <= 64 B each, 33 KB; root probe, timestamp, targets, bins, artifact, headers:
# <= 16 KB. 137 KB, rounded up:
TARGET_COLD_BYTES = 150_000
TARGET_WARM_SERVER_CPU_MS = 5.0

DESCRIBE = {
    "cold_refresh": "bootstrap (root v1) + refresh() on a fresh cache; per s = clients/s",
    "cold_refresh_install": "the same + find(name) via one bin + download of the artifact",
    "cold_per_client": "server-side figures per cold refresh+install client",
    "nochange_refresh": "refresh() again on each client's cache, nothing published",
    "nochange_per_client": "server-side figures per no-change refresh",
}

log = logging.getLogger("bench.registry_load")


@dataclass
class Sample:
    ok: bool
    refresh_ns: int = 0
    total_ns: int = 0
    requests: int = 0
    body_bytes: int = 0
    error: str = ""


@dataclass
class Wave:
    samples: dict[int, Sample]  # by client number
    seconds: float
    server_cpu_s: float
    client_cpu_s: float
    server: dict[str, Any]  # the server's counters over the wave


def cold_client(url: str, root: bytes, cache: Path, name: str) -> Sample:
    """A new user: trust root v1, refresh, resolve `name` through its bin, download."""
    fetcher = RequestsFetcher()
    try:
        began = time.perf_counter_ns()
        client = RegistryClient.bootstrap("load", url, cache, root, fetcher=fetcher)
        client.refresh()
        refreshed = time.perf_counter_ns()
        found = client.find(name)
        newest = max(found, key=lambda r: tuple(int(p) for p in r.version.split(".")))
        client.download(newest.artifact, cache / "download")
        done = time.perf_counter_ns()
    except Exception as e:
        return Sample(False, error=f"{type(e).__name__}: {e}"[:200])
    finally:
        fetcher.close()
    return Sample(True, refreshed - began, done - began, len(fetcher.urls), fetcher.bytes_received)


def warm_client(url: str, cache: Path) -> Sample:
    """The hourly case: the same user refreshes on its cache, nothing new published."""
    fetcher = RequestsFetcher()
    try:
        began = time.perf_counter_ns()
        RegistryClient("load", url, cache, fetcher=fetcher).refresh()
        elapsed = time.perf_counter_ns() - began
    except Exception as e:
        return Sample(False, error=f"{type(e).__name__}: {e}"[:200])
    finally:
        fetcher.close()
    return Sample(True, elapsed, elapsed, len(fetcher.urls), fetcher.bytes_received)


def run_clients(work: Callable[[int], Sample], count: int, budget: float) -> dict[int, Sample]:
    """`work(i)` for i in range(count), THREADS at a time; none starts after `budget` s."""
    deadline = time.monotonic() + budget
    lock = threading.Lock()
    todo: Iterator[int] = iter(range(count))
    out: dict[int, Sample] = {}

    def worker() -> None:
        while True:
            with lock:
                i = next(todo, None) if time.monotonic() < deadline else None
            if i is None:
                return
            sample = work(i)
            with lock:
                out[i] = sample

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wave(server: ServerProcess, work: Callable[[int], Sample], count: int, budget: float) -> Wave:
    """One wave of clients, with the server's CPU and counters around it."""
    before, cpu0, mine0 = server.stats(), server.cpu_seconds(), client_cpu()
    began = time.perf_counter()
    samples = run_clients(work, count, budget)
    seconds = time.perf_counter() - began
    cpu1, mine1, after = server.cpu_seconds(), client_cpu(), server.stats()
    delta: dict[str, Any] = {
        k: after[k] - before[k] for k in ("requests", "connections", "bytes_sent")
    }
    delta["statuses"] = {
        code: n - before["statuses"].get(code, 0) for code, n in after["statuses"].items()
    }
    return Wave(samples, seconds, cpu1 - cpu0, mine1 - mine0, delta)


def summarise(w: Wave, total: bool) -> tuple[Result, Result]:
    """(the latency row, the per-client row) of one wave."""
    good = [s for s in w.samples.values() if s.ok]
    n = max(len(good), 1)
    times = [s.total_ns if total else s.refresh_ns for s in good]
    row = latency(times) | {
        "per_s": round(len(good) / w.seconds, 1) if w.seconds else 0,
        "issued": len(w.samples),
        "completed": len(good),
        "errors": len(w.samples) - len(good),
        "error_examples": sorted({s.error for s in w.samples.values() if not s.ok})[:3],
        "wave_seconds": round(w.seconds, 2),
    }
    per: Result = {
        "n": len(good),
        "requests": round(w.server["requests"] / n, 2),
        "bytes": round(w.server["bytes_sent"] / n),
        "client_requests": round(sum(s.requests for s in good) / n, 2),
        "client_body_bytes": round(sum(s.body_bytes for s in good) / n),
        "connections": round(w.server["connections"] / n, 2),
        "statuses": w.server["statuses"],
        "server_cpu_ms": round(w.server_cpu_s * 1000 / n, 2),
        "server_cpu_ms_per_request": round(w.server_cpu_s * 1000 / max(w.server["requests"], 1), 3),
        "server_busy_pct": round(w.server_cpu_s / w.seconds * 100, 1) if w.seconds else 0.0,
        "client_cpu_ms": round(w.client_cpu_s * 1000 / n, 2),
    }
    per["note"] = (
        f"{per['requests']:g} requests, {per['bytes']:,} bytes (headers included;"
        f" {per['client_body_bytes']:,} body bytes), server CPU {per['server_cpu_ms']:g} ms,"
        f" client CPU {per['client_cpu_ms']:g} ms; server busy {per['server_busy_pct']:g}%"
    )
    return row, per


def published_sizes(published: Path) -> dict[str, int]:
    """Byte sizes of the newest snapshot and timestamp, and the mean size of a bin."""
    meta = published / "metadata"
    bins = [p.stat().st_size for p in meta.glob("*.bin-*.json")]
    snapshot = max(meta.glob("*.snapshot.json"), key=lambda p: int(p.name.split(".")[0]))
    return {
        "timestamp": (meta / "timestamp.json").stat().st_size,
        "snapshot": snapshot.stat().st_size,
        "bin_mean": round(sum(bins) / max(len(bins), 1)),
    }


def run_waves(work_dir: Path, published: Path, root: bytes) -> tuple[Wave, Wave]:
    """Both waves against one server process; pinning undone and server stopped on exit."""
    caches = [work_dir / "clients" / f"{i:04d}" for i in range(CLIENTS)]
    names = [plugin_name(i * 997 % PLUGIN_COUNT) for i in range(CLIENTS)]  # spread over bins
    mine = os.sched_getaffinity(0)
    pinned = (os.cpu_count() or 1) >= 2
    with contextlib.closing(ServerProcess(published)) as server:
        try:
            if pinned:
                pin([server.proc.pid], SERVER_CPUS)
                pin([os.getpid()], CLIENT_CPUS)
            url = server.url
            log.info("cold wave: %d clients, %d threads", CLIENTS, THREADS)
            cold = wave(
                server,
                lambda i: cold_client(url, root, caches[i], names[i]),
                CLIENTS,
                COLD_BUDGET_S,
            )
            done = [caches[i] for i, s in sorted(cold.samples.items()) if s.ok]
            log.info("no-change wave: %d clients", len(done))
            warm = wave(server, lambda i: warm_client(url, done[i]), len(done), WARM_BUDGET_S)
        finally:
            pin([os.getpid()], mine)
    return cold, warm


def on_paper(cold: Result, warm: Result, sizes: dict[str, int]) -> list[str]:
    """A day of FLEET clients against a CDN, from the measured per-client figures."""
    refreshes = FLEET * REFRESHES_PER_DAY
    installs = round(FLEET * INSTALL_SHARE)
    w_req, w_gb = refreshes * warm["requests"], refreshes * warm["bytes"] / 1e9
    c_req, c_gb = installs * cold["requests"], installs * cold["bytes"] / 1e9
    per_s = refreshes / 86400
    edge_fetches = EDGES * 86400 // EDGE_TTL_S
    return [
        f"On paper, {FLEET:,} clients refreshing every {24 // REFRESHES_PER_DAY} h ="
        f" {refreshes / 1e6:g} M no-change refreshes/day x {warm['requests']:g} requests ="
        f" **{w_req / 1e6:,.1f} M requests/day**, x {warm['bytes']:,} bytes ="
        f" **{w_gb:,.1f} GB/day** at the edge (on average {per_s:,.0f} refreshes/s).",
        f"Installs: {INSTALL_SHARE:.0%} of clients install one plugin a day = {installs:,}"
        f" cold refresh+installs (an upper bound: a warm client adds at most bins, one bin and"
        " the artifact to its refresh)"
        f" x {cold['requests']:g} requests = {c_req:,.0f} requests and x {cold['bytes']:,}"
        f" bytes = {c_gb:,.2f} GB/day.",
        f"Total at the edge: **{(w_req + c_req) / 1e6:,.1f} M requests and"
        f" {w_gb + c_gb:,.1f} GB per day** ({(w_req + c_req) * 30 / 1e9:,.2f} G requests and"
        f" {(w_gb + c_gb) * 30 / 1e3:,.2f} TB per 30 days). CDNs bill per 10,000 requests and"
        f" per GB out: {(w_req + c_req) / 1e4:,.0f} request units and {w_gb + c_gb:,.1f} GB a"
        " day; prices are left out (multiply by your CDN's); the bytes count HTTP/1.1 headers"
        " as this server sends them (a CDN's are larger, TLS adds more).",
        f"Each publish that changes the snapshot adds one snapshot.json ({sizes['snapshot']:,}"
        f" bytes with {HASH_BINS} bins) per client at its next refresh:"
        f" {FLEET * sizes['snapshot'] / 1e9:,.1f} GB per publish. The daily `index timestamp`"
        " re-signing does not (the snapshot version stays), so the no-change figures hold.",
        "Origin behind a CDN: `index push` sets `no-cache` on timestamp.json, so the edge"
        f" revalidates each of the {refreshes / 1e6:g} M refreshes with the origin (a 304 of a"
        " few hundred bytes when nothing changed: requests, little bytes). With"
        f" max-age={EDGE_TTL_S} instead: at most one request per edge per {EDGE_TTL_S} s,"
        f" {EDGES} edges (assumed) x {86400 // EDGE_TTL_S:,} = {edge_fetches:,} requests/day"
        f" ({edge_fetches * sizes['timestamp'] / 1e9:.2f} GB), at the price of a client that"
        " crosses edges within a minute of a publish refusing the older one until next time;"
        " the root probe (N+1.root.json, a 404) needs negative caching with the same TTL, else"
        f" all {refreshes / 1e6:g} M probes reach the origin. Every other file is immutable"
        " (consistent snapshots, hash-prefixed targets): cacheable for a year, fetched once"
        " per edge.",
        f"Without a CDN, this Python server would spend {per_s:,.0f} refreshes/s x"
        f" {warm['server_cpu_ms']:g} ms = {per_s * warm['server_cpu_ms'] / 1000:.2f} CPU on"
        " average on no-change refreshes alone (peaks higher); http.server is a measuring"
        " stick here, not a production server.",
    ]


def how_measured(cold: Result, warm: Result, pinned: bool) -> list[str]:
    where = (
        f"the server pinned to CPU {min(SERVER_CPUS)}, the clients (this process,"
        f" {THREADS} threads, one GIL) to CPU {min(CLIENT_CPUS)}"
        if pinned
        else "nothing pinned (fewer than 2 CPUs)"
    )
    return [
        f"Index: {PLUGIN_COUNT:,} plugins x {len(VERSIONS)} versions, {HASH_BINS} hash bins;"
        f" one server process (bench/static_server.py, ThreadingHTTPServer, HTTP/1.1); {where}.",
        f"Client CPU was {cold['client_cpu_ms']:g} ms per cold client and"
        f" {warm['client_cpu_ms']:g} ms per no-change refresh against server CPU of"
        f" {cold['server_cpu_ms']:g} and {warm['server_cpu_ms']:g} ms (server busy"
        f" {cold['server_busy_pct']:g}% and {warm['server_busy_pct']:g}% of the wave): the"
        " load generator, not the server, sets clients/s, and the p50/p99 times include"
        f" waiting for the GIL behind {THREADS - 1} other clients.",
        "Requests, statuses and bytes per client are the server's counters (status line,"
        " headers and body) over completed clients; server CPU is utime+stime of its process"
        " from /proc (10 ms ticks) over the wave. python-tuf's ngclient sends no conditional"
        " requests, so a no-change refresh is a 404 root probe and a full 200 timestamp.json,"
        " never a 304; http.server closes the connection after a 404 (connections per client"
        " are in the JSON).",
    ]


def judge(cold: Result, install: Result, warm: Result, nochange: Result) -> list[Target]:
    return [
        at_most("errors, both waves", install["errors"] + nochange["errors"], 0),
        at_least(
            f"cold clients completed within {COLD_BUDGET_S:g} s", install["completed"], CLIENTS
        ),
        at_most("no-change refresh: requests per client", warm["requests"], TARGET_WARM_REQUESTS),
        at_most("no-change refresh: bytes per client", warm["bytes"], TARGET_WARM_BYTES, " B"),
        at_most("cold refresh+install: bytes per client", cold["bytes"], TARGET_COLD_BYTES, " B"),
        at_most(
            "no-change refresh: server CPU per client",
            warm["server_cpu_ms"],
            TARGET_WARM_SERVER_CPU_MS,
            " ms",
        ),
    ]


def measure() -> Report:
    use_this_python()
    began = time.perf_counter()
    pinned = (os.cpu_count() or 1) >= 2
    report = Report(NAME, machine(loadavg_before=loadavg(), pinned=pinned))
    work = Path(tempfile.mkdtemp(prefix="pm-bench-registry-load-"))
    try:
        log.info("building and publishing the index")
        published, built = build(work, "bins", make_releases(ed25519.generate()))
        log.info("published in %.1f s", built["seconds"])
        with IndexRepo.open(work / "bins") as repo:
            root = repo.root_bytes(1)
        sizes = published_sizes(published)
        cold_wave, warm_wave = run_waves(work, published, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    refresh, cold = summarise(cold_wave, total=False)
    install, _ = summarise(cold_wave, total=True)
    nochange, warm = summarise(warm_wave, total=False)
    cold["published_sizes"] = sizes
    report.results = {
        "cold_refresh": refresh,
        "cold_refresh_install": install,
        "cold_per_client": cold,
        "nochange_refresh": nochange,
        "nochange_per_client": warm,
    }
    report.targets = judge(cold, install, warm, nochange)
    report.notes = on_paper(cold, warm, sizes) + how_measured(cold, warm, pinned)
    report.notes.append(
        f"The 1-min load was {report.machine['loadavg_before']} before the run: other work"
        " on this VM shares its CPUs, which moves the times more than the per-process CPU."
    )
    return report.finish(began)


def main() -> Report:
    report = measure()
    print(write_report(report, DESCRIBE), end="", flush=True)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
