"""`python -m tests.dashboard_screenshot [OUT]`: the README's picture of the dashboard
(docs/dashboard.png by default), taken in Debian's headless Chromium.

It builds a state root in a temporary folder with some example plugins (and a small fake
that asks the user a question), boots the reference host, opens the dashboard, searches the
embedded index and takes a screenshot of the whole page.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from host.control import request
from tests import conftest
from tests.boot_helpers import write_source
from tests.dashboard_helpers import Booted, browser_missing, new_browser, state_root

DOCS = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"
WIDTH = 1280


def asker_source(root: Path) -> Path:
    """tests/fakes/plugin.py in its `services` mode: it asks "Fake asks" with a Yes."""
    script = f'#!/bin/sh\nexec "{sys.executable}" "{conftest.FAKE_PLUGIN}" services\n'
    caps = f'read = ["{conftest.FAKE_PLUGIN.parent}"]'
    return write_source(root, "asker", executable=script.encode(), capabilities=caps)


def take(out: Path) -> Path:
    """Write the screenshot to `out`; returns it."""
    missing = browser_missing()
    if missing:
        raise SystemExit(missing)
    root = Path(tempfile.mkdtemp(prefix="pm-dash-shot-"))
    try:
        examples = ["allowlist", "hosts", "history", "fail2lock"]
        home = state_root(root, examples, [asker_source(root / "src")])
        with Booted(home) as booted:
            for _ in range(4):  # fail2lock locks alice: a notification without actions
                booted.host.run_hook("PreAuthCheck", "alice", ())
            request(
                home.control_socket,
                "config-set",
                key="plugins/allowlist/rules",
                value=["/usr/bin/curl example.com.", "/usr/bin/git github.com."],
            )
            browser = new_browser(root / "profile", WIDTH, 900)
            try:
                _shoot(booted, browser, out)
            finally:
                browser.quit()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _shoot(booted: Booted, browser: WebDriver, out: Path) -> None:
    browser.get(booted.dashboard.url)
    wait = WebDriverWait(browser, 15, poll_frequency=0.05)
    wait.until(lambda d: d.find_element(By.ID, "connection").text == "live")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#shown li"))
    browser.find_element(By.ID, "search-text").send_keys("a")
    browser.find_element(By.ID, "search-button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#results tr[data-key="seed_decider"]'))
    browser.find_element(By.CSS_SELECTOR, '#results tr[data-key="seed_decider"] .install').click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#jobs li[data-state="done"]'))
    browser.find_element(By.CSS_SELECTOR, '#modules tr[data-key="hosts"] summary').click()
    time.sleep(0.3)
    for _ in range(2):  # the window's outer size: grow it until the whole page is inside
        missing = browser.execute_script(
            "return document.documentElement.scrollHeight - window.innerHeight"
        )
        size = browser.get_window_size()
        browser.set_window_size(WIDTH, size["height"] + int(missing))
    browser.execute_script("window.scrollTo(0, 0)")
    out.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(out))


if __name__ == "__main__":
    print(take(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS))
