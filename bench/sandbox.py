"""Sandbox benchmark: what confining a plugin costs, at its start and on every decision.

Why this exists: every plugin starts inside a sandbox (host.sandbox): bubblewrap's namespaces,
a seccomp filter against child processes, setpriv (no new privileges; under root a uid of its
own) and prlimit. The sandbox is worth having only if a host boots about as fast with it and
decides about as fast through it; this measures both against the same plugins started without
it, in the same run.

Two modes, switched per `PluginHost`:

- confined: the default `SandboxSettings()` (`required`), as every host runs;
- unconfined: `SandboxSettings(mode="best-effort")` with a PATH on which bubblewrap is
  missing (this interpreter's folder, then a temporary folder of links to `prlimit` and
  `setpriv` only), so plugins start with the process limits alone: prlimit and setpriv, no
  namespaces, no seccomp filter, the host's uid. There is no way to start a plugin with no
  sandbox tools at all, so this is the floor a host can reach.

Each started plugin's `process.enforced.confined` is checked to be what its mode says.

Measured, with the two modes interleaved (AB BA AB ...: a drift of a noisy machine hits both
alike), real plugin processes (`bench/plugins/decider.py`) as in bench/runtime.py:

- start of one plugin: `PluginHost.add` and `start` until it runs, START_ROUNDS per mode
  (after one untimed start per mode); the plugin is stopped again, untimed.
- boot of BOOT_PLUGINS plugins: `start_all` of a fresh host, BOOT_ROUNDS per mode; median.
- decision latency: `PluginHost.decide` on one decider plugin ACCEPTing the connection, with
  the decision socket (the plugin's default transport) and over the PR's unary gRPC call
  (`no-extensions`), in interleaved sample blocks, both with the processes placed by the
  scheduler and all on one CPU (suffix `_one_cpu`, see bench/runtime.py on why).

Targets are ratios measured in this run: confinement adds at most 10% to boot and at most 3%
to the decision p50. The whole run takes about a minute.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from bench.common import (
    PLUGINS,
    Report,
    Result,
    at_most,
    latency,
    loadavg,
    machine,
    pin,
    use_this_python,
    write_report,
)
from bench.runtime import ONE_CPU, connection, interleaved
from host.runtime import PluginHost, PluginSpec
from host.sandbox import BEST_EFFORT, SandboxSettings
from host.services.backchannel import HostServices
from pm_plugin.wire.portmaster import network_pb2

NAME = "sandbox"
PLUGIN = PLUGINS / "decider.py"
ACCEPT = network_pb2.VERDICT_ACCEPT
CONFINED, UNCONFINED = "confined", "unconfined"

#: Timed single starts per mode, and the plugins and rounds per mode of the boot.
START_ROUNDS = 10
BOOT_PLUGINS = 30
BOOT_ROUNDS = 3
#: Interleaved rounds of decision samples; samples per round, case and placement.
DECIDE_ROUNDS = 12
SOCKET_PER_ROUND = 400
UNARY_PER_ROUND = 350
#: The decision transports: result name -> the decider plugin's modes.
TRANSPORTS = {"decide_socket": (), "decide_unary": ("no-extensions",)}

TARGET_BOOT_PCT = 10.0
TARGET_DECIDE_PCT = 3.0

UNCONFINED_WORDS = "best-effort without bubblewrap: prlimit + setpriv, no namespaces"
DESCRIBE = {
    "start_" + CONFINED: "PluginHost.add + start until running, default sandbox",
    "start_" + UNCONFINED: f"same, unconfined = {UNCONFINED_WORDS}",
    f"boot{BOOT_PLUGINS}_" + CONFINED: f"PluginHost.start_all of {BOOT_PLUGINS} plugins, "
    "default sandbox (p50 = median round)",
    f"boot{BOOT_PLUGINS}_" + UNCONFINED: f"same, unconfined = {UNCONFINED_WORDS}",
}
for _transport, _words in (
    ("decide_socket", "PluginHost.decide, 1 plugin with the streamed extension (decision socket)"),
    ("decide_unary", "PluginHost.decide, 1 plugin without extensions (unary gRPC)"),
):
    DESCRIBE[f"{_transport}_{CONFINED}"] = _words + ", default sandbox"
    DESCRIBE[f"{_transport}_{UNCONFINED}"] = "same, unconfined"
    DESCRIBE[f"{_transport}_{CONFINED}{ONE_CPU}"] = "same as confined, all on one CPU"
    DESCRIBE[f"{_transport}_{UNCONFINED}{ONE_CPU}"] = "same as unconfined, all on one CPU"

log = logging.getLogger("bench.sandbox")


# -- the two modes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """A sandbox mode: its settings, and the PATH its plugins must be started under."""

    name: str
    settings: SandboxSettings
    path: str  # os.environ["PATH"] while its plugins start

    @property
    def confined(self) -> bool:
        return self.name == CONFINED

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """PATH as this mode needs it, restored afterwards (the host looks its sandbox tools
        up on PATH at every plugin start)."""
        saved = os.environ.get("PATH", "")
        os.environ["PATH"] = self.path
        try:
            yield
        finally:
            os.environ["PATH"] = saved

    def host(self, hosts: list[PluginHost], bases: list[str]) -> PluginHost:
        """A new host in this mode on a fresh data folder, remembered for `close_hosts`."""
        base = tempfile.mkdtemp(prefix=f"pm-bench-sandbox-{self.name}-")
        bases.append(base)
        host = PluginHost(HostServices(), base_directory=base, sandbox=self.settings)
        hosts.append(host)
        return host


def modes(tools_dir: str) -> tuple[Mode, Mode]:
    """(confined, unconfined); links `prlimit` and `setpriv` into `tools_dir` for the latter."""
    for tool in ("prlimit", "setpriv"):
        found = shutil.which(tool)
        if found is None:
            raise RuntimeError(f"{tool} (util-linux) is not on PATH")
        os.symlink(found, os.path.join(tools_dir, tool))
    if shutil.which("bwrap") is None:
        raise RuntimeError("bubblewrap (bwrap) is not on PATH: nothing confined to measure")
    here = os.environ.get("PATH", "").split(os.pathsep, 1)[0]  # this python's (use_this_python)
    return (
        Mode(CONFINED, SandboxSettings(), os.environ.get("PATH", "")),
        Mode(UNCONFINED, SandboxSettings(mode=BEST_EFFORT), here + os.pathsep + tools_dir),
    )


def alternating(pair: tuple[Mode, Mode], rounds: int) -> Iterator[Mode]:
    """Both modes `rounds` times, AB BA AB ...: a drift hits both alike."""
    for r in range(rounds):
        yield from pair if r % 2 == 0 else reversed(pair)


def spec(name: str, *modes: str) -> PluginSpec:
    return PluginSpec(name=name, argv=(str(PLUGIN), *modes), types=("decider",))


def check_mode(host: PluginHost, name: str, mode: Mode) -> None:
    """Raise unless plugin `name` runs as confined as `mode` says."""
    process = host.get(name).process
    enforced = process.enforced if process is not None else None
    if enforced is None or enforced.confined != mode.confined:
        said = enforced.to_json() if enforced is not None else "no process"
        raise RuntimeError(f"plugin {name} should be {mode.name} but runs with {said}")


def close_hosts(hosts: Sequence[PluginHost], bases: Sequence[str]) -> None:
    """Stop every host and remove its data folder."""
    for host in hosts:
        host.stop_all()
    for base in bases:
        shutil.rmtree(base, ignore_errors=True)


# -- the measurements -----------------------------------------------------------------------


def starts(pair: tuple[Mode, Mode], hosts: list[PluginHost], bases: list[str]) -> Result:
    """add + start of one plugin per round, per mode; each stopped again untimed."""
    own = {mode.name: mode.host(hosts, bases) for mode in pair}
    samples: dict[str, list[int]] = {mode.name: [] for mode in pair}
    warm = [(mode, -1) for mode in pair]  # one untimed start each: tools looked up, files read
    timed = [(mode, r // 2) for r, mode in enumerate(alternating(pair, START_ROUNDS))]
    for mode, r in warm + timed:
        host, name = own[mode.name], f"start-{mode.name}-{r + 1}"
        with mode.entered():
            began = time.perf_counter_ns()
            host.add(spec(name))
            host.start(name)  # raises LoaderError with the plugin's stderr on failure
            took = time.perf_counter_ns() - began
            check_mode(host, name, mode)
            host.stop(name)
        if r >= 0:
            samples[mode.name].append(took)
    out: Result = {}
    for name, s in samples.items():
        result = latency(s)
        p50_ms, mean_ms = result["p50_us"] / 1000, result["mean_us"] / 1000
        out[f"start_{name}"] = result | {
            "p50_ms": round(p50_ms, 1),
            "mean_ms": round(mean_ms, 1),
            "note": f"p50 {p50_ms:.1f} ms, mean {mean_ms:.1f} ms",
        }
    return out


def boots(pair: tuple[Mode, Mode]) -> Result:
    """`start_all` of BOOT_PLUGINS plugins on a fresh host, BOOT_ROUNDS per mode."""
    samples: dict[str, list[int]] = {mode.name: [] for mode in pair}
    for mode in alternating(pair, BOOT_ROUNDS):
        hosts: list[PluginHost] = []
        bases: list[str] = []
        try:
            host = mode.host(hosts, bases)
            names = [f"boot-{i:02d}" for i in range(BOOT_PLUGINS)]
            for name in names:
                host.add(spec(name))
            with mode.entered():
                began = time.perf_counter_ns()
                failed = host.start_all()
                took = time.perf_counter_ns() - began
            if failed:
                raise RuntimeError(f"{len(failed)} plugins failed to boot {mode.name}: {failed}")
            for name in names:
                check_mode(host, name, mode)
        finally:
            close_hosts(hosts, bases)
        samples[mode.name].append(took)
        log.info("boot of %d, %s: %.2f s", BOOT_PLUGINS, mode.name, took / 1e9)
    out: Result = {}
    for name, s in samples.items():
        median_s = statistics.median(s) / 1e9
        out[f"boot{BOOT_PLUGINS}_{name}"] = latency(s, median_s=round(median_s, 3)) | {
            "rounds_s": [round(x / 1e9, 3) for x in s],
            "note": f"median {median_s:.2f} s",
        }
    return out


def decisions(pair: tuple[Mode, Mode], hosts: list[PluginHost], bases: list[str]) -> Result:
    """PluginHost.decide per transport and mode, in interleaved blocks, free and on one CPU."""
    conn = connection("plain.bench.")
    cases: dict[str, tuple[Callable[[], object], int]] = {}
    pids = [os.getpid()]
    for transport, plugin_modes in TRANSPORTS.items():
        per_round = UNARY_PER_ROUND if plugin_modes else SOCKET_PER_ROUND
        for mode in pair:
            host = mode.host(hosts, bases)
            with mode.entered():
                host.add(spec("decider", *plugin_modes))
                host.start("decider")
            check_mode(host, "decider", mode)
            verdict = host.decide(conn)
            if verdict.verdict != ACCEPT or verdict.plugin != "decider" or verdict.cached:
                raise RuntimeError(f"unexpected answer of the {mode.name} decider: {verdict}")
            process = host.get("decider").process
            if process is not None and process.server_pid is not None:
                pids.append(process.server_pid)  # inside the sandbox: below bwrap's processes
            cases[f"{transport}_{mode.name}"] = (functools.partial(host.decide, conn), per_round)
    allowed = os.sched_getaffinity(0)
    one = {max(allowed)}
    try:
        samples = interleaved(
            cases,
            DECIDE_ROUNDS,
            {"": lambda: pin(pids, allowed), ONE_CPU: lambda: pin(pids, one)},
        )
    finally:
        pin(pids, allowed)
    for host in hosts:
        errors = host.counters.of("decider").errors
        if errors:
            raise RuntimeError(f"a decider failed {errors} times during the run")
    return {name: latency(s) for name, s in samples.items()}


# -- the run --------------------------------------------------------------------------------


def overhead(results: dict[str, Result], confined: str, unconfined: str, key: str) -> float:
    """Percent result `confined` adds to `unconfined` in `key`; noted on the confined one."""
    mine, floor = results[confined], results[unconfined]
    pct = round((float(mine[key]) / float(floor[key]) - 1.0) * 100.0, 1)
    mine[f"overhead_{key}_pct"] = pct
    said = f"{key.split('_')[0]} {pct:+.1f}% vs {unconfined}"
    mine["note"] = "; ".join(x for x in (mine.get("note", ""), said) if x)
    return pct


def added_start_ms(results: dict[str, Result]) -> None:
    """What confinement adds per plugin start in ms (single start p50, boot median / plugins),
    noted on the confined results: the absolute figure, next to the ratio."""
    boot = f"boot{BOOT_PLUGINS}_"
    single = results["start_" + CONFINED]["p50_us"] - results["start_" + UNCONFINED]["p50_us"]
    per_plugin = results[boot + CONFINED]["median_s"] - results[boot + UNCONFINED]["median_s"]
    for name, ms in (("start_", single / 1000), (boot, per_plugin * 1000 / BOOT_PLUGINS)):
        results[name + CONFINED]["added_ms_per_start"] = round(ms, 1)
        results[name + CONFINED]["note"] += f" ({ms:+.1f} ms per start)"


def measure() -> Report:
    use_this_python()
    began = time.perf_counter()
    report = Report(NAME, machine(loadavg_before=loadavg()))
    results: dict[str, Result] = {}
    hosts: list[PluginHost] = []
    bases: list[str] = []
    tools_dir = tempfile.mkdtemp(prefix="pm-bench-sandbox-tools-")
    try:
        pair = modes(tools_dir)
        log.info("single starts")
        results.update(starts(pair, hosts, bases))
        log.info("boots of %d", BOOT_PLUGINS)
        results.update(boots(pair))
        log.info("decisions")
        results.update(decisions(pair, hosts, bases))
    finally:
        close_hosts(hosts, bases)
        shutil.rmtree(tools_dir, ignore_errors=True)

    pct: dict[str, float] = {}
    for prefix, key in (("start", "p50_us"), (f"boot{BOOT_PLUGINS}", "median_s")):
        pct[prefix] = overhead(results, f"{prefix}_{CONFINED}", f"{prefix}_{UNCONFINED}", key)
    for transport in TRANSPORTS:
        for suffix in ("", ONE_CPU):
            confined, unconfined = (f"{transport}_{m}{suffix}" for m in (CONFINED, UNCONFINED))
            pct[transport + suffix] = overhead(results, confined, unconfined, "p50_us")
    added_start_ms(results)
    report.results = results
    report.targets = [
        at_most(
            f"confinement's added boot({BOOT_PLUGINS}) time (median start_all)",
            pct[f"boot{BOOT_PLUGINS}"],
            TARGET_BOOT_PCT,
            "%",
        ),
        at_most(
            "confinement's added decision p50 (PluginHost.decide, decision socket)",
            pct["decide_socket"],
            TARGET_DECIDE_PCT,
            "%",
        ),
        at_most(
            "confinement's added decision p50 (PluginHost.decide, decision socket), one CPU",
            pct["decide_socket" + ONE_CPU],
            TARGET_DECIDE_PCT,
            "%",
        ),
    ]
    report.notes = notes(results)
    return report.finish(began)


def notes(results: dict[str, Result]) -> list[str]:
    boot = {
        mode: results[f"boot{BOOT_PLUGINS}_{mode}"]["rounds_s"] for mode in (CONFINED, UNCONFINED)
    }
    return [
        f"confined = the default sandbox (bubblewrap namespaces, seccomp filter, setpriv, "
        f"prlimit{', own uid: the host runs as root' if os.geteuid() == 0 else ''}); "
        f"unconfined = {UNCONFINED_WORDS}, no seccomp filter, the host's uid. Every plugin's "
        "`enforced.confined` was checked to match its mode.",
        "Modes interleaved AB BA AB ... in every part; ratios are of figures of this run.",
        f"Starts: {START_ROUNDS} timed per mode after one untimed each; the time of add + "
        "start until RUNNING (process, handshake, connect, Configure, describe).",
        f"Boots: {BOOT_ROUNDS} rounds per mode, each a fresh host starting {BOOT_PLUGINS} "
        f"plugins with start_all (one after another); rounds in s: {boot}.",
        f"Decisions: {DECIDE_ROUNDS} interleaved rounds under both placements, "
        f"{SOCKET_PER_ROUND} (socket) or {UNARY_PER_ROUND} (unary) calls per round, case and "
        "placement, after 50 warm-up calls each; p50 = median, p99 = nearest rank.",
    ]


def main() -> Report:
    report = measure()
    print(write_report(report, DESCRIBE), end="", flush=True)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pm_plugins.dispatch").setLevel(logging.ERROR)
    main()
