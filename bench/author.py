"""Author's kit benchmark: what a plugin author waits for, from a new plugin to a change
running in the host.

Why this exists: the kit (`pm-plugins new`, `pm_plugin.testing`, `pm-plugins dev`, plugins
that carry their dependencies) is only worth having if the loop is short: a test that starts
the plugin in well under a second, a change that runs in the host about as fast as a person
looks at it, and a bundled plugin that starts about as fast as a plain script.

Measured, in one run, with real processes (a decider `pm-plugins new` wrote):

- harness_start: `PluginUnderTest(...).start()` (process, handshake, test host's services,
  Configure) until the first `decide` answers, then `stop()`, HARNESS_ROUNDS rounds;
- harness_decide: one `decide(**fields)` through the harness (unary gRPC), DECIDE_ROUNDS;
- start of the same plugin as a plain script and as a zipapp carrying one pure-Python
  dependency (`[python] requires`, built by `package`), interleaved, ZIPAPP_ROUNDS each;
- dev_round: one round of `pm-plugins dev` after a change (install the folder unsigned, the
  booted dev-mode host's `reload`: stop, re-plan, seal, start) until the plugin runs again,
  DEV_ROUNDS rounds, against a host booted in-process as `pm-plugins --dev-mode boot` does;
- new_and_test: `pm-plugins new` plus `python -m pytest` of the new folder, as processes
  (interpreter start included), NEW_ROUNDS rounds.

Targets: harness start p50 <= 1 s; dev round p50 <= 2 s; zipapp start <= 1.5 x the script's.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import Report, at_most, latency, loadavg, machine, use_this_python, write_report
from host import control_requests
from host.control import ControlServer, request
from host.reference_host import ReferenceHost
from keys.store import TrustStore
from loader.home import Home
from pm_plugin import Verdict
from pm_plugin.scaffold import write_plugin
from pm_plugin.testing import PluginUnderTest
from registry_client.consent import ask_consent
from registry_client.installer import install_many, read_package
from registry_client.package import read_source
from registry_client.registrar import Registrar

NAME = "author"
HARNESS_ROUNDS, DECIDE_ROUNDS, ZIPAPP_ROUNDS, DEV_ROUNDS, NEW_ROUNDS = 10, 300, 10, 10, 3
TARGET_HARNESS_MS, TARGET_DEV_MS, TARGET_ZIPAPP_RATIO = 1000.0, 2000.0, 1.5
DESCRIBE = {
    "harness_start": "PluginUnderTest start + first decide + stop",
    "harness_decide": "one decide through the harness (unary gRPC)",
    "script_start": "harness start of the plugin as a plain script",
    "zipapp_start": "harness start of the same plugin as a zipapp with one bundled dependency",
    "dev_round": "pm-plugins dev after a change: install unsigned + reload until running",
    "new_and_test": "pm-plugins new + python -m pytest of the new folder (processes)",
}
#: The dependency the zipapp carries: one pure-Python module, as a wheel written here.
TINY = "tinydep"


def ns_since(t0: int) -> int:
    return time.perf_counter_ns() - t0


def harness(plugin: Path) -> tuple[list[int], list[int]]:
    starts, decides = [], []
    for _ in range(HARNESS_ROUNDS):
        t0 = time.perf_counter_ns()
        with PluginUnderTest(plugin, name="hello", types=["decider"]) as p:
            p.decide(domain="ads.example")
            starts.append(ns_since(t0))
    with PluginUnderTest(plugin, name="hello", types=["decider"]) as p:
        for _ in range(DECIDE_ROUNDS):
            t0 = time.perf_counter_ns()
            verdict = p.decide(domain="ads.example").verdict
            decides.append(ns_since(t0))
            assert verdict == Verdict.BLOCK
    return starts, decides


def zipapp_of(src: Path, work: Path) -> Path:
    """The artifact `package` builds for `src` with a `[python]` table (one local wheel)."""
    from tests.fakes.wheels import wheel  # the tests' wheel writer, no network

    wheel(src / "wheels", TINY, files={f"{TINY}.py": 'WORD = "tiny"\n'})
    toml = src / "plugin.toml"
    toml.write_text(
        toml.read_text() + f'\n[python]\nrequires = ["{TINY}"]\nfind-links = "wheels"\n'
    )
    plugin = src / "plugin"
    plugin.write_text(
        plugin.read_text().replace("\nBLOCKED", f"\nimport {TINY}  # noqa\nBLOCKED", 1)
    )
    out = work / "hello.pyz"
    out.write_bytes(read_source(src).executable)
    out.chmod(0o755)
    return out


def starts_of(script: Path, pyz: Path) -> tuple[list[int], list[int]]:
    plain: list[int] = []
    bundled: list[int] = []
    for _ in range(ZIPAPP_ROUNDS):
        for path, into in ((script, plain), (pyz, bundled)):
            t0 = time.perf_counter_ns()
            with PluginUnderTest(path, name="hello", types=["decider"]) as p:
                p.decide(domain="ads.example")
                into.append(ns_since(t0))
    return plain, bundled


@contextlib.contextmanager
def dev_host(home: Home) -> Iterator[ReferenceHost]:
    host = ReferenceHost(home, dev_mode=True, installer=Registrar(home, dev_mode=True))
    server = ControlServer(home.control_socket, lambda r: control_requests.answer(host, r))
    server.start()
    try:
        host.boot()
        yield host
    finally:
        server.close()
        host.shutdown()


def dev_install(home: Home, src: Path, reload: bool = True) -> str:
    release = read_package(src, trust=TrustStore.load(home.trust_store), dev_mode=True)
    install_many(home, [release], consent=ask_consent(home, [release], allow=True, ask=None))
    if not reload:
        return "installed"
    return str(request(home.control_socket, "reload", module=release.name)["state"])


def dev_rounds(work: Path, src: Path) -> list[int]:
    logging.getLogger("pm_plugins.host").setLevel(logging.ERROR)  # "DEV MODE" on each reload
    home = Home(work / "dev-home")
    home.ensure()
    dev_install(home, src, reload=False)  # installed before boot: the host starts it
    samples = []
    with dev_host(home):
        plugin = src / "plugin"
        for i in range(DEV_ROUNDS):
            plugin.write_text(plugin.read_text() + f"# change {i}\n")
            t0 = time.perf_counter_ns()
            state = dev_install(home, src)
            samples.append(ns_since(t0))
            if state != "running":
                raise RuntimeError(f"round {i}: the plugin is {state} after reload")
    return samples


def new_and_test(work: Path) -> list[int]:
    samples = []
    for i in range(NEW_ROUNDS):
        folder = work / f"new-{i}"
        t0 = time.perf_counter_ns()
        subprocess.run(
            [sys.executable, "-m", "cli", "--home", str(work / "new-home"), "new", f"p{i}",
             "--type", "decider", "--dir", str(folder)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
            check=True, capture_output=True, timeout=120, cwd=folder,
        )  # fmt: skip
        samples.append(ns_since(t0))
    return samples


def measure() -> Report:
    use_this_python()
    began = time.perf_counter()
    report = Report(NAME, machine(loadavg_before=loadavg()))
    work = Path(tempfile.mkdtemp(prefix="pm-bench-author-"))
    try:
        write_plugin(work / "hello", "hello", "decider")
        starts, decides = harness(work / "hello" / "plugin")
        shutil.copytree(work / "hello", work / "bundled")
        plain, bundled = starts_of(work / "hello" / "plugin", zipapp_of(work / "bundled", work))
        dev = dev_rounds(work, work / "hello")
        created = new_and_test(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    samples = {
        "harness_start": starts, "harness_decide": decides, "script_start": plain,
        "zipapp_start": bundled, "dev_round": dev, "new_and_test": created,
    }  # fmt: skip
    report.results = {name: latency(s) for name, s in samples.items()}
    p50_ms = {name: r["p50_us"] / 1000 for name, r in report.results.items()}
    ratio = p50_ms["zipapp_start"] / p50_ms["script_start"]
    report.targets = [
        at_most(
            "harness start + first decide, p50", p50_ms["harness_start"], TARGET_HARNESS_MS, " ms"
        ),
        at_most("dev round (change -> running), p50", p50_ms["dev_round"], TARGET_DEV_MS, " ms"),
        at_most("zipapp start / script start, p50", round(ratio, 2), TARGET_ZIPAPP_RATIO, "x"),
    ]
    report.notes = [
        f"p50/p99 nearest rank. Rounds: harness {HARNESS_ROUNDS}, decide {DECIDE_ROUNDS}, "
        f"script/zipapp {ZIPAPP_ROUNDS} each interleaved, dev {DEV_ROUNDS}, new+pytest "
        f"{NEW_ROUNDS}. The harness runs the plugin unconfined (a test host has no sandbox); "
        "the dev host confines it as `pm-plugins --dev-mode boot` does.",
        f"new_and_test is nearly all interpreter and pytest start: p50 "
        f"{p50_ms['new_and_test']:.0f} ms for two processes and one plugin start.",
    ]
    return report.finish(began)


def main() -> Report:
    report = measure()
    print(write_report(report, DESCRIBE), end="", flush=True)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    main()
