"""The dashboard's test bench: a state root with real signed plugins, the reference host booted
with its control socket, a dashboard in front of it, and Debian's headless Chromium driven
through its chromedriver. Used by tests/test_dashboard.py and tests/dashboard_screenshot.py.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chromium.webdriver import ChromiumDriver

from dashboard.server import DashboardServer
from host import control_requests
from host.control import ControlServer
from host.reference_host import ReferenceHost
from loader.home import Home
from registry_client.default_index import ensure_default_registry
from tests.boot_helpers import install_signed, new_publisher, trust, write_source
from tests.conftest import EXAMPLES

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DASHBOARD_FAKE = Path(__file__).resolve().parent / "fakes" / "dashboard_plugin.py"
#: Flags for a headless Chromium on a machine without network: without the background
#: networking ones it stalls on connections that never open.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def browser_missing() -> str | None:
    """Why no browser can run here (None: it can)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return None
    return (
        f"the dashboard's browser tests need Debian's chromium and chromium-driver "
        f"({', '.join(missing)} missing): apt-get install chromium chromium-driver "
        f"(.ci/run does it)"
    )


def new_browser(
    profile: Path, width: int = 1280, height: int = 900, flags: Iterable[str] = ()
) -> ChromiumDriver:
    """A headless Chromium with a fresh profile in `profile` (its console kept for
    `get_log("browser")`)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for flag in (*CHROMIUM_FLAGS, *flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def fake_source(root: Path, name: str, mode: str) -> Path:
    """A plugin source of tests/fakes/dashboard_plugin.py in `mode`."""
    script = f'#!/bin/sh\nexec "{sys.executable}" "{DASHBOARD_FAKE}" {mode}\n'
    caps = f'read = ["{DASHBOARD_FAKE.parent}"]'
    return write_source(root, name, executable=script.encode(), capabilities=caps)


def index_sources(root: Path, extra: Iterable[Path] = ()) -> Path:
    """A folder like examples/plugins (links to each), plus `extra` plugin sources, to
    publish as the embedded default index."""
    folder = root / "index-sources"
    folder.mkdir()
    for example in sorted(EXAMPLES.iterdir()):
        if (example / "plugin.toml").is_file():
            (folder / example.name).symlink_to(example)
    for source in extra:
        shutil.copytree(source, folder / source.name)
    return folder


def state_root(
    root: Path,
    examples: Iterable[str],
    sources: Iterable[Path] = (),
    index_extra: Iterable[Path] = (),
) -> Home:
    """A state root with `examples` and the plugin `sources` installed, signed by a key
    trusted as official, and the default registry published from the examples and
    `index_extra`."""
    home = Home(root / "home")
    home.ensure()
    publisher = new_publisher()
    trust(home, publisher)
    work = root / "work"
    for src in [EXAMPLES / name for name in examples] + list(sources):
        install_signed(home, publisher, src, work / src.name)
    ensure_default_registry(home, lambda _: None, examples=index_sources(root, index_extra))
    return home


class Booted:
    """The reference host of `home` booted, its control socket, and a dashboard."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.host = ReferenceHost(home, dev_mode=False)
        self.control = ControlServer(
            home.control_socket,
            lambda req: control_requests.answer(self.host, req),
            plugin_of=self.host.plugins.plugin_of,
        )
        self.dashboard = DashboardServer(home)

    def __enter__(self) -> Booted:
        self.control.start()
        try:
            self.host.boot()
            self.dashboard.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.dashboard.close()
        self.control.close()
        self.host.shutdown()


def temporary_root(prefix: str) -> Path:
    """A short path for a state root (unix socket paths are at most 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def serve_page(page: bytes) -> ThreadingHTTPServer:
    """A page of another origin: `page` as text/html on 127.0.0.1 at a free port, served
    until `shutdown()`."""

    class OnePage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OnePage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
