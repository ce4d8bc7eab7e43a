"""Face benchmark: how long a person waits on the host's faces, `config set` and the dashboard.

Why: a changed option is worth little if the plugin sees it late, and a dashboard that loads
slowly or trails the host is one nobody keeps open. Measured in one run, in a temporary state
root of 30 installed signed plugins (29 copies of bench/plugins/decider.py and
bench/plugins/watcher.py; one generated key trusted as official) booted in-process as
`pm-plugins boot` does (ReferenceHost and its ControlServer), a DashboardServer in front of
it, opened in Debian's headless Chromium through chromedriver:

- config set -> watch fired: the control request `config-set` of `plugins/watcher/level`
  (what `pm-plugins config set` sends) until the watcher's `on_change` callback wrote the new
  value to the FIFO this process reads; also `python -m cli config set watcher/level N` as a
  process, until the watch fired and until it exited, next to `python -m cli --help`.
- page load: `driver.get(URL)`; from the page's Navigation Timing (navigation start = 0) to
  DOMContentLoaded and to every module row (30 plugins and the core modules) in the table, as
  a MutationObserver the page gets before its own scripts records it; the bytes of the
  document and its resources, and of the live stream's first state event (the rows' data).
- live-update delay: with the page open, `disable` then `enable` of one decider through the
  control socket; an observer on its row's state cell records the page's Date.now() when it
  shows `disabled` (`running`); from the request sent and from the host's answer (the
  dashboard's own part). A random pause of up to one poll interval precedes each request, so
  requests fall at any phase of the dashboard's 200 ms poll.
- config set -> page: the same config-set, until the option's form holds the new value.

The whole run takes about a minute on 2 CPUs.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH,
    PLUGINS,
    Report,
    Result,
    at_most,
    loadavg,
    machine,
    percentile,
    use_this_python,
    write_report,
)
from bench.loader import write_source
from dashboard.live import POLL_INTERVAL
from dashboard.server import DashboardServer
from host import control_requests
from host.control import ControlServer, request
from host.reference_host import ReferenceHost
from keys import ed25519
from keys.store import TrustStore
from loader.home import Home
from registry_client.installer import install, read_package
from registry_client.package import build_package

NAME = "face"
DECIDER, WATCHER = PLUGINS / "decider.py", PLUGINS / "watcher.py"
PLUGIN_COUNT = 30
OPTION = "plugins/watcher/level"
TOGGLED = "bench-00"  # the plugin disabled and enabled for the live-update delay
WATCH_WARMUP, WATCH_ROUNDS = 10, 200
CLI_ROUNDS, CLI_FLOOR_ROUNDS = 20, 5
PAGE_ROUNDS, LIVE_ROUNDS, CONFIG_PAGE_ROUNDS = 10, 30, 30
WAIT_S = 15.0  # the longest any one change may take to show
TARGET_WATCH_MS, TARGET_LIVE_MS, TARGET_PAGE_MS = 50.0, 500.0, 2000.0

DESCRIBE = {
    "config_set_watch": "control request config-set until the plugin's watch fired (FIFO line)",
    "cli_config_set_watch": "`python -m cli config set watcher/level N` until the watch fired",
    "cli_config_set_exit": "same command, until the process exited",
    "cli_help": "`python -m cli --help`: interpreter start and imports, until it exited",
    "page_dom_content_loaded": "driver.get: navigation start -> DOMContentLoaded",
    "page_rows": f"navigation start -> all module rows in the table ({PLUGIN_COUNT} plugins)",
    "live_disable_sent": "disable request sent -> the row shows disabled",
    "live_disable_answered": "disable answered by the host -> the row shows disabled",
    "live_enable_sent": "enable request sent -> the row shows running",
    "live_enable_answered": "enable answered by the host -> the row shows running",
    "config_set_page": "control request config-set -> the option's form shows the value",
}

#: Runs in each page before its scripts: window.__faceRows = performance.now() at %d rows.
ROWS_OBSERVER = """window.__faceRows = null;
new MutationObserver((records, observer) => {
  const body = document.querySelector("#modules tbody");
  if (!body || body.children.length < %d) return;
  window.__faceRows = performance.now(), observer.disconnect();
}).observe(document, {childList: true, subtree: true});"""
#: Once the rows are in: the navigation's timings and the bytes of the page's requests.
PAGE_FIGURES = """const poll = setInterval((done) => {
  if (window.__faceRows === null) return; else clearInterval(poll);
  const nav = performance.getEntriesByType("navigation")[0];
  const all = [nav, ...performance.getEntriesByType("resource")];
  const sum = (key) => all.reduce((total, entry) => total + entry[key], 0);
  done({dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, rows: window.__faceRows,
        transfer: sum("transferSize"), body: sum("decodedBodySize"), requests: all.length});
}, 5, arguments[arguments.length - 1]);"""
#: Arm an observer: the promise window.__faceDone resolves with Date.now() once the text of
#: `selector` (or its `attribute`) is `want`. Returns what it is now.
ARM = """const [selector, want, attribute] = arguments;
const node = document.querySelector(selector);
const value = () => attribute ? node.getAttribute(attribute) : node.textContent;
window.__faceDone = new Promise((resolve) => {
  new MutationObserver((records, observer) => {
    if (value() === want) { resolve(Date.now()); observer.disconnect(); }
  }).observe(node, {childList: true, characterData: true, subtree: true, attributes: true});
});
return value();"""
SEEN = "arguments[arguments.length - 1](window.__faceDone)"

#: Debian's Chromium and its driver, with tests/dashboard_helpers.py's flags (that module
#: imports tests/conftest.py, which moves the temporary folder).
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    *("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"),
    *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
    *("--no-first-run", "--hide-scrollbars", "--window-size=1280,900"),
)


def build_home(work: Path) -> Home:
    """A state root with PLUGIN_COUNT - 1 deciders and the watcher, installed and signed."""
    key = ed25519.generate()
    trust = TrustStore()
    trust.trust(key.public_key(), "official", "face benchmark publisher")
    home = Home(work / "home")
    home.ensure()
    trust.save(home.trust_store)
    sources = [(f"bench-{i:02d}", DECIDER) for i in range(PLUGIN_COUNT - 1)]
    for name, script in [*sources, ("watcher", WATCHER)]:
        source = write_source(work / "src", name, script.read_bytes())
        package = build_package(source, key, work / "dist")
        install(home, read_package(package, trust=trust, dev_mode=False))
    return home


class Fifo:
    """The read end of the watcher's FIFO (held open read-write: never an end of file)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.buffer = b""

    def wait_for(self, value: int, timeout: float = WAIT_S) -> float:
        """perf_counter() once the line `value` arrived (earlier lines are dropped)."""
        want, deadline = str(value).encode(), time.perf_counter() + timeout
        while True:
            *lines, self.buffer = self.buffer.split(b"\n")
            if want in lines:
                self.buffer = b"\n".join([*lines[lines.index(want) + 1 :], self.buffer])
                return time.perf_counter()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"the watch did not fire for {value} within {timeout} s")
            if select.select([self.fd], [], [], left)[0]:
                self.buffer += os.read(self.fd, 65536)


def new_browser(profile: Path) -> Any:
    """A headless Chromium with a fresh profile in `profile` (selenium: a dev dependency)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        raise RuntimeError(f"{CHROMIUM} or {CHROMEDRIVER} is missing (Debian: chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def watch_rounds(home: Home, fifo: Fifo, values: Iterator[int]) -> list[float]:
    """ms from the config-set request to the watch's line, WATCH_ROUNDS after the warm-up."""
    samples: list[float] = []
    for r in range(WATCH_WARMUP + WATCH_ROUNDS):
        value = next(values)
        began = time.perf_counter()
        request(home.control_socket, "config-set", key=OPTION, value=value)
        arrived = fifo.wait_for(value)
        if r >= WATCH_WARMUP:
            samples.append((arrived - began) * 1000)
    return samples


def cli_rounds(home: Home, fifo: Fifo, values: Iterator[int]) -> dict[str, list[float]]:
    """ms of `python -m cli config set` until the watch fired and until it exited, and of
    `python -m cli --help`."""
    out: dict[str, list[float]] = {"cli_config_set_watch": [], "cli_config_set_exit": []}
    base = [sys.executable, "-m", "cli", "--home", str(home.root)]
    for _ in range(CLI_ROUNDS):
        value = next(values)
        began = time.perf_counter()
        argv = [*base, "config", "set", "watcher/level", str(value)]
        proc = subprocess.Popen(argv, cwd=BENCH.parent, stdout=subprocess.DEVNULL)
        arrived = fifo.wait_for(value)
        if proc.wait(timeout=WAIT_S) != 0:
            raise RuntimeError(f"`config set` exited with {proc.returncode}")
        out["cli_config_set_exit"].append((time.perf_counter() - began) * 1000)
        out["cli_config_set_watch"].append((arrived - began) * 1000)
    out["cli_help"] = []
    for _ in range(CLI_FLOOR_ROUNDS):
        began = time.perf_counter()
        subprocess.run([*base, "--help"], cwd=BENCH.parent, check=True, capture_output=True)
        out["cli_help"].append((time.perf_counter() - began) * 1000)
    return out


def page_loads(driver: Any, url: str, rows: int) -> tuple[dict[str, list[float]], Result]:
    """PAGE_ROUNDS loads after one untimed: ms to DOMContentLoaded and to `rows` rows; the
    last load's figures."""
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": ROWS_OBSERVER % rows}
    )
    samples: dict[str, list[float]] = {"page_dom_content_loaded": [], "page_rows": []}
    figures: dict[str, Any] = {}
    for r in range(PAGE_ROUNDS + 1):
        driver.get("about:blank")
        time.sleep(0.3)  # the server drops the last page's stream within a second
        driver.get(url)
        figures = driver.execute_async_script(PAGE_FIGURES)
        if r > 0:
            samples["page_dom_content_loaded"].append(figures["dcl"])
            samples["page_rows"].append(figures["rows"])
    return samples, figures


def seen_at(
    driver: Any, selector: str, want: str, act: Callable[[], object], attribute: str = ""
) -> tuple[float, float, float]:
    """Arm an observer on `selector`, run `act`; wall-clock ms of (act began, act returned,
    the page showed `want`), after a random pause within one poll interval."""
    time.sleep(random.uniform(0, POLL_INTERVAL))
    if driver.execute_script(ARM, selector, want, attribute) == want:
        raise RuntimeError(f"{selector} already shows {want!r}")
    began = time.time() * 1000
    act()
    answered = time.time() * 1000
    return began, answered, float(driver.execute_async_script(SEEN))


def live_updates(driver: Any, home: Home) -> dict[str, list[float]]:
    """ms from disable (enable) of TOGGLED sent, and answered, to its row's new state."""
    cell = f'#modules tr[data-module="{TOGGLED}"] td.state'
    out: dict[str, list[float]] = {}
    for _ in range(LIVE_ROUNDS):
        for op, state in (("disable", "disabled"), ("enable", "running")):
            act = functools.partial(request, home.control_socket, op, module=TOGGLED)
            began, answered, seen = seen_at(driver, cell, state, act)
            out.setdefault(f"live_{op}_sent", []).append(seen - began)
            out.setdefault(f"live_{op}_answered", []).append(seen - answered)
    return out


def config_page(driver: Any, home: Home, fifo: Fifo, values: Iterator[int]) -> list[float]:
    """ms from the config-set request to the option's form holding the value."""
    form = f'#config form[data-option="{OPTION}"]'
    samples: list[float] = []
    for _ in range(CONFIG_PAGE_ROUNDS):
        value = next(values)
        act = functools.partial(request, home.control_socket, "config-set", key=OPTION, value=value)
        began, _, seen = seen_at(driver, form, json.dumps(value), act, "data-server")
        fifo.wait_for(value)  # keep the FIFO drained: the watch fired as well
        samples.append(seen - began)
    return samples


@contextlib.contextmanager
def booted(home: Home) -> Iterator[ReferenceHost]:
    """The reference host of `home` with its control socket, as `pm-plugins boot` runs it."""
    host = ReferenceHost(home, dev_mode=False)
    server = ControlServer(
        home.control_socket,
        lambda req: control_requests.answer(host, req),
        plugin_of=host.plugins.plugin_of,
    )
    server.start()
    try:
        host.boot()
        states = {m["name"]: m["state"] for m in host.status()["modules"] if m["kind"] == "plugin"}
        if list(states.values()).count("running") != PLUGIN_COUNT:
            raise RuntimeError(f"not all {PLUGIN_COUNT} plugins run: {states}")
        yield host
    finally:
        server.close()
        host.shutdown()


def measure_all(work: Path) -> tuple[dict[str, list[float]], Result]:
    """Every sample (ms) by result name, and the figures of the last page load."""
    home = build_home(work)
    values = itertools.count(1)  # a new value per change: no line is taken for another's
    with booted(home) as host, contextlib.ExitStack() as stack:
        fifo = Fifo(home.data_dir / "watcher" / "watch.fifo")
        stack.callback(os.close, fifo.fd)
        samples = {"config_set_watch": watch_rounds(home, fifo, values)}
        samples |= cli_rounds(home, fifo, values)
        dashboard = DashboardServer(home)
        dashboard.start()
        stack.callback(dashboard.close)
        driver = new_browser(work / "profile")
        stack.callback(driver.quit)
        driver.set_script_timeout(WAIT_S)
        loads, figures = page_loads(driver, dashboard.url, len(host.status()["modules"]))
        samples |= loads
        version, parts = dashboard.live.snapshot()  # the first event a page gets, as sent:
        event = f"event: state\ndata: {json.dumps({'version': version, **parts})}\n\n"
        figures["state_event_bytes"] = len(event.encode())
        samples |= live_updates(driver, home)
        samples["config_set_page"] = config_page(driver, home, fifo, values)
    return samples, figures


def in_ms(samples: list[float]) -> Result:
    """p50/p90/p99/max in ms (nearest rank), and p50_us/p99_us for the table."""
    ordered = sorted(samples)
    quantiles = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "max": 1.0}
    ms = {q: round(percentile(ordered, p), 1) for q, p in quantiles.items()}
    return {
        "p50_us": round(ms["p50"] * 1000),
        "p99_us": round(ms["p99"] * 1000),
        "n": len(ordered),
        **{f"{q}_ms": v for q, v in ms.items()},
        **({"samples_ms": [round(s, 1) for s in samples]} if len(samples) <= 30 else {}),
        "note": ", ".join(f"{q} {v:,.1f} ms" for q, v in ms.items()),
    }


def measure() -> Report:
    use_this_python()
    began = time.perf_counter()
    report = Report(NAME, machine(loadavg_before=loadavg()))
    work = Path(tempfile.mkdtemp(prefix="pm-bench-face-"))
    try:
        samples, figures = measure_all(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = report.results = {name: in_ms(s) for name, s in samples.items()}
    results["page_rows"]["last_load"] = {k: round(v, 1) for k, v in figures.items()}
    results["page_rows"]["note"] += (
        f"; {figures['requests']} requests, {figures['transfer']:,} bytes transferred "
        f"+ {figures['state_event_bytes']:,} bytes of the first state event"
    )
    p50 = {name: r["p50_ms"] for name, r in results.items()}
    wanted = (
        ("config set -> watch fired", "config_set_watch", TARGET_WATCH_MS),
        ("live update, host's answer -> page, disable", "live_disable_answered", TARGET_LIVE_MS),
        ("live update, host's answer -> page, enable", "live_enable_answered", TARGET_LIVE_MS),
        ("page load: navigation -> rows", "page_rows", TARGET_PAGE_MS),
    )
    report.targets = [at_most(f"{w}, p50", p50[key], limit, " ms") for w, key, limit in wanted]
    report.notes = notes(p50)
    return report.finish(began)


def notes(p50: dict[str, float]) -> list[str]:
    poll = POLL_INTERVAL * 1000
    return [
        f"{PLUGIN_COUNT} signed plugins, default sandbox; p50 = median, p90/p99 nearest rank. "
        f"config set: {WATCH_ROUNDS} rounds after {WATCH_WARMUP}; the command line "
        f"({CLI_ROUNDS} rounds) asks config-get, then config-set: its start (`--help`, "
        f"{CLI_FLOOR_ROUNDS} rounds) is nearly all of its time.",
        f"Page: {PAGE_ROUNDS} loads after one untimed, each after about:blank; the rows come "
        "from the live stream's first event, sent at once from the server's last snapshot; "
        "every byte is sent on every load (Cache-Control: no-store).",
        f"Live updates ({LIVE_ROUNDS} rounds each; config {CONFIG_PAGE_ROUNDS}): the dashboard "
        f"polls the host every {poll:.0f} ms while a page listens (dashboard/live.py), so a "
        "change shows within one interval plus a poll and the page's update (p50 after the "
        f"host's answer: disable {p50['live_disable_answered']:.0f} ms, enable "
        f"{p50['live_enable_answered']:.0f} ms; config {p50['config_set_page']:.0f} ms from "
        f"the request), where config set reaches the plugin's watch, pushed, in "
        f"{p50['config_set_watch']:.1f} ms. `sent` includes the host stopping (starting) the "
        "plugin. The page's Date.now() against this process's time.time(): one clock, in ms.",
    ]


def main() -> Report:
    report = measure()
    print(write_report(report, DESCRIBE), end="", flush=True)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pm_plugins.dispatch").setLevel(logging.ERROR)
    main()
