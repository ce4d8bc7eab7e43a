"""The dashboard (dashboard/), as its owner uses it and as a hostile page or local user tries it.

One reference host boots real signed plugins for the whole module (allowlist; `hostile`, whose
options and notification are HTML; `broken`, which dies with HTML on stderr), behind its
control socket and a dashboard; one headless Chromium (Debian's, through chromedriver) drives
the page: it sees the rows, disables and enables a module, changes an option and the
allowlist decides differently, answers a notification (the plugin's notify() returns it),
installs and uninstalls from the search box. The refusals are tried over plain HTTP, and
from real pages of other origins in the same browser.
"""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chromium.webdriver import ChromiumDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from dashboard import server as dashboard_server
from dashboard.guard import CSP, CSRF_HEADER, MAX_BODY, TOKEN_HEADER
from dashboard.server import DashboardServer
from host.control import request
from loader.home import Home
from loader.lockfile import read_lock
from tests import dashboard_screenshot
from tests.conftest import EXAMPLES, _children, _socket_dirs, wait_for
from tests.dashboard_helpers import (
    Booted,
    browser_missing,
    fake_source,
    new_browser,
    serve_page,
    state_root,
)
from tests.fakes.dashboard_plugin import IMG, LINK, SCRIPT

#: What a DNS rebinding attack makes of the attacker's name, in the test browser.
REBIND = "MAP evil.example 127.0.0.1"
#: The description of a plugin in the index, HTML that would run script if parsed.
XSS_DESCRIPTION = f"Looks harmless {IMG} {SCRIPT}"


@dataclass
class Bench:
    booted: Booted
    browser: ChromiumDriver

    @property
    def server(self) -> DashboardServer:
        return self.booted.dashboard

    def decide(self, binary: str, domain: str) -> dict[str, Any]:
        result: dict[str, Any] = self.booted.host.decide(binary=binary, domain=domain)
        return result


def xss_source(root: Path) -> Path:
    """A plugin for the index whose description is HTML and that needs a plugin no
    registry has (so installing it is refused, with a sentence)."""
    src = root / "xss"
    src.mkdir(parents=True)
    (src / "plugin").write_bytes((EXAMPLES / "allowlist" / "plugin").read_bytes())
    (src / "plugin").chmod(0o755)
    (src / "plugin.toml").write_text(
        f'name = "xss"\nversion = "1.0.0"\ndescription = \'{XSS_DESCRIPTION}\'\n'
        'publisher = "someone <b>bold</b>"\ntypes = ["decider"]\nexecutable = "plugin"\n'
        '[requires]\nhost = ["firewall"]\nplugins = {ghost = ">=1"}\n'
    )
    return src


@pytest.fixture(autouse=True)
def no_leftover_processes_or_sockets() -> Iterator[None]:
    """conftest's per-test check, replaced: the module's host outlives each test (and
    restarts plugins when they are enabled); `bench` checks the same at the module's end."""
    yield


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    missing = browser_missing()
    if missing:
        pytest.fail(missing)  # never a silent skip
    children, dirs = _children(), _socket_dirs()
    root = tmp_path_factory.mktemp("dash")
    fakes = [
        fake_source(root / "src", "hostile", "options"),
        fake_source(root / "src", "broken", "broken"),
    ]
    home = state_root(root, ["allowlist"], fakes, index_extra=[xss_source(root / "index-extra")])
    with Booted(home) as booted:
        # evil.example resolves to 127.0.0.1 in this browser, as after a DNS rebinding
        browser = new_browser(root / "profile", flags=[f"--host-resolver-rules={REBIND}"])
        try:
            yield Bench(booted, browser)
        finally:
            browser.quit()
    assert wait_for(lambda: _children() <= children, 10), "processes left behind"
    assert {d for d in _socket_dirs() - dirs if d.exists()} == set()


# -- driving the page ----------------------------------------------------------------------------


def wait(bench: Bench, predicate: Callable[[], object], message: str, timeout: float = 15) -> Any:
    return WebDriverWait(
        bench.browser,
        timeout,
        poll_frequency=0.05,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(lambda _: predicate(), message)


def find(bench: Bench, css: str) -> WebElement:
    return bench.browser.find_element(By.CSS_SELECTOR, css)


def text(bench: Bench, css: str) -> str:
    """The element's whole text (hidden parts included)."""
    return str(find(bench, css).get_property("textContent"))


def open_page(bench: Bench) -> None:
    bench.browser.get(bench.server.url)
    wait(bench, lambda: text(bench, "#connection") == "live", "the page never went live")


def cell(name: str, column: str) -> str:
    return f'#modules tr[data-key="{name}"] td.{column}'


def state_of(bench: Bench, name: str) -> str:
    return text(bench, cell(name, "state"))


def host_row(bench: Bench, name: str) -> dict[str, Any]:
    (row,) = [m for m in bench.booted.host.status()["modules"] if m["name"] == name]
    return dict(row)


# -- what the owner sees and does ------------------------------------------------------------------


def test_the_page_shows_every_module_and_plugin(bench: Bench) -> None:
    open_page(bench)
    wait(bench, lambda: state_of(bench, "allowlist") == "running", "allowlist is not running")
    row = host_row(bench, "allowlist")
    assert text(bench, cell("allowlist", "version")) == "1.0.0"
    assert text(bench, cell("allowlist", "signer")) == row["signer"]
    assert row["signer"].endswith("(official)")
    assert text(bench, cell("allowlist", "pid")) == str(row["pid"])
    assert text(bench, cell("allowlist", "restarts")) == "0"
    sandbox = text(bench, cell("allowlist", "sandbox"))
    assert sandbox.startswith("confined") and "filesystem: " in sandbox
    assert "nothing beyond its own data folder" in sandbox  # its signed capabilities
    assert text(bench, cell("firewall", "name")) == "firewall (host)"
    assert state_of(bench, "spn") == "disabled"
    assert find(bench, f"{cell('spn', 'state')} ~ td button.toggle").text == "Enable"
    wait(bench, lambda: state_of(bench, "broken") == "failed", "broken did not fail")
    assert "last stderr lines: broken <img" in text(bench, cell("broken", "reason"))
    assert find(bench, "#dev-mode").is_displayed() is False


def test_a_module_is_disabled_and_enabled_from_the_page(bench: Bench) -> None:
    open_page(bench)
    wait(bench, lambda: state_of(bench, "allowlist") == "running", "allowlist is not running")
    first_pid = host_row(bench, "allowlist")["pid"]
    assert bench.decide("/usr/bin/curl", "example.com")["by"] == "allowlist"
    button = find(bench, '#modules tr[data-key="allowlist"] button.toggle')
    assert button.text == "Disable"
    button.click()
    wait(bench, lambda: state_of(bench, "allowlist") == "disabled", "allowlist not disabled")
    assert host_row(bench, "allowlist")["state"] == "disabled"
    assert bench.decide("/usr/bin/curl", "example.com")["by"] is None  # it decides no more
    wait(bench, lambda: button.text == "Enable", "no Enable button")
    button.click()
    wait(bench, lambda: state_of(bench, "allowlist") == "running", "allowlist not enabled")
    wait(bench, lambda: text(bench, cell("allowlist", "pid")) not in ("-", str(first_pid)), "pid")
    assert bench.decide("/usr/bin/curl", "example.com")["by"] == "allowlist"


def option_form(option: str) -> str:
    return f'#config form[data-option="{option}"]'


def test_an_option_changed_in_the_page_changes_what_the_plugin_decides(bench: Bench) -> None:
    open_page(bench)
    rules = option_form("plugins/allowlist/rules")
    wait(bench, lambda: find(bench, rules).is_displayed(), "no form for the allowlist's rules")
    assert text(bench, f"{rules} .type") == "string_array"
    assert text(bench, f"{rules} .set") == " (default)"
    field = find(bench, f"{rules} textarea")
    assert field.get_property("value") == "/usr/bin/curl example.com.\n/usr/bin/curl safing.io."
    assert bench.decide("/usr/bin/wget", "example.org")["by"] is None
    field.clear()
    field.send_keys("/usr/bin/wget example.org.")
    find(bench, f"{rules} button.save").click()
    wait(bench, lambda: bench.decide("/usr/bin/wget", "example.org")["by"] == "allowlist", "rule")
    assert bench.decide("/usr/bin/curl", "example.com")["by"] is None  # the old rules are gone
    wait(bench, lambda: text(bench, f"{rules} .set") == "", "the option is not shown as set")
    find(bench, f"{rules} button.reset").click()
    wait(bench, lambda: bench.decide("/usr/bin/curl", "example.com")["by"] == "allowlist", "reset")
    assert bench.decide("/usr/bin/wget", "example.org")["by"] is None
    wait(bench, lambda: "curl safing.io." in str(field.get_property("value")), "not shown reset")


def test_options_show_their_types_and_refusals_and_follow_changes_made_elsewhere(
    bench: Bench,
) -> None:
    open_page(bench)
    limit = option_form("plugins/hostile/limit")
    wait(bench, lambda: find(bench, limit).is_displayed(), "no form for an int option")
    assert find(bench, f"{limit} input").get_attribute("type") == "number"
    assert find(bench, f"{option_form('plugins/hostile/verbose')} input").get_attribute("type") == (
        "checkbox"
    )
    assert find(bench, f"{option_form('plugins/hostile/greeting')} input").get_attribute(
        "type"
    ) == ("text")
    # the host checks the type: a refusal comes back as its sentence, next to the option
    status, body = post(bench, "/api/config", {"key": "plugins/hostile/limit", "value": "many"})
    assert status == 409 and "takes a whole number" in body["error"]
    # set from another shell (the control socket): the page follows without a reload
    request(bench.booted.home.control_socket, "config-set", key="plugins/hostile/limit", value=7)
    wait(bench, lambda: find(bench, f"{limit} input").get_property("value") == "7", "not live")
    verbose = option_form("plugins/hostile/verbose")
    find(bench, f"{verbose} input").click()
    find(bench, f"{verbose} button.save").click()
    wait(bench, lambda: bench.booted.host.config.option("plugins/hostile/verbose")["value"], "bool")
    for key in ("plugins/hostile/limit", "plugins/hostile/verbose"):
        request(bench.booted.home.control_socket, "config-reset", key=key)


def test_a_notification_is_answered_from_the_page(bench: Bench) -> None:
    open_page(bench)
    note = '#waiting li[data-key^="hostile:"]'
    wait(bench, lambda: find(bench, note).is_displayed(), "the notification is not shown")
    assert text(bench, f"{note} .title") == f"Title {IMG}"  # the plugin's HTML, as text
    assert text(bench, f"{note} .text") == f"Message {SCRIPT}"
    (button,) = bench.browser.find_elements(By.CSS_SELECTOR, f"{note} button.action")
    assert button.text == f"OK {IMG}"
    assert_nothing_of_theirs_ran(bench)
    button.click()
    answer = bench.booted.home.data_dir / "hostile" / "answer.json"
    assert wait_for(answer.exists, 10)
    assert json.loads(answer.read_text()) == {"answer": "ok"}  # what notify() returned
    wait(bench, lambda: not bench.browser.find_elements(By.CSS_SELECTOR, note), "still waiting")


def job_item(bench: Bench, kind: str, name: str) -> WebElement:
    for item in bench.browser.find_elements(By.CSS_SELECTOR, "#jobs li"):
        if item.find_element(By.CSS_SELECTOR, ".what").text == f"{kind} {name}":
            return item
    raise NoSuchElementException(f"no job {kind} {name}")


def search_for(bench: Bench, words: str) -> None:
    box = find(bench, "#search-text")
    box.clear()
    box.send_keys(words)
    find(bench, "#search-button").click()


def test_a_plugin_is_installed_and_uninstalled_from_the_search_box(bench: Bench) -> None:
    open_page(bench)
    search_for(bench, "hosts-format")  # words of its signed description
    result = '#results tr[data-key="hosts"]'
    wait(bench, lambda: find(bench, result).is_displayed(), "hosts not found")
    assert text(bench, f"{result} .installed") == "-"
    assert text(bench, f"{result} .registry") == "pm-plugins examples (registry default)"
    find(bench, f"{result} button.install").click()
    wait(bench, lambda: job_item(bench, "install", "hosts").get_attribute("data-state") == "done",
         "the install did not finish")  # fmt: skip
    job = job_item(bench, "install", "hosts")
    lines = job.find_element(By.CSS_SELECTOR, ".lines").text.splitlines()
    assert any(line.startswith("downloading hosts 1.0.0") for line in lines)
    assert any(line.startswith("hosts 1.0.0: installed, signed by") for line in lines)
    assert "  may: read /etc/hosts" in lines
    assert job.find_element(By.CSS_SELECTOR, ".restart").is_displayed()  # not running yet
    assert read_lock(bench.booted.home.lock_file)["hosts"].version == "1.0.0"
    wait(bench, lambda: text(bench, f"{result} .installed") == "1.0.0", "not shown installed")
    find(bench, f"{result} button.uninstall").click()
    wait(
        bench,
        lambda: job_item(bench, "uninstall", "hosts").get_attribute("data-state") == "done",
        "the uninstall did not finish",
    )
    assert "hosts" not in read_lock(bench.booted.home.lock_file)
    wait(bench, lambda: text(bench, f"{result} .installed") == "-", "not shown uninstalled")


def test_a_refused_install_shows_the_librarys_sentence(bench: Bench) -> None:
    open_page(bench)
    search_for(bench, "harmless")
    result = '#results tr[data-key="xss"]'
    wait(bench, lambda: find(bench, result).is_displayed(), "xss not found")
    assert text(bench, f"{result} .description") == XSS_DESCRIPTION
    assert text(bench, f"{result} .registry") == "someone <b>bold</b> (registry default)"
    find(bench, f"{result} button.install").click()
    wait(bench, lambda: job_item(bench, "install", "xss").get_attribute("data-state") == "refused",
         "the install was not refused")  # fmt: skip
    error = job_item(bench, "install", "xss").find_element(By.CSS_SELECTOR, ".error").text
    assert "ghost" in error and "\n" not in error
    assert "xss" not in read_lock(bench.booted.home.lock_file)


def finished_job(bench: Bench, job_id: int) -> dict[str, Any]:
    def find_job() -> dict[str, Any] | None:
        for job in bench.server.live.snapshot()[1]["jobs"]:
            if job["id"] == job_id and job["state"] in ("done", "refused"):
                return dict(job)
        return None

    assert wait_for(find_job, 30)
    job = find_job()
    assert job is not None
    return job


def test_upgrade_and_unknown_jobs_say_what_happened(bench: Bench) -> None:
    status, body = post(bench, "/api/jobs", {"kind": "upgrade", "name": "allowlist"})
    assert status == 200
    job = finished_job(bench, body["result"]["id"])
    assert job["state"] == "done" and job["lines"][-1] == "allowlist is up to date"
    status, body = post(bench, "/api/jobs", {"kind": "upgrade", "name": "hosts"})
    job = finished_job(bench, body["result"]["id"])
    assert (job["state"], job["error"]) == ("refused", "plugin hosts is not installed")
    status, body = post(bench, "/api/jobs", {"kind": "uninstall", "name": "ghost"})
    job = finished_job(bench, body["result"]["id"])
    assert (job["state"], job["error"]) == ("refused", "plugin ghost is not installed")
    status, body = post(bench, "/api/jobs", {"kind": "format", "name": "allowlist"})
    assert status == 400 and body["error"].startswith("unknown job 'format'")


def test_plugin_strings_are_shown_as_text_and_never_run(bench: Bench) -> None:
    """Names, reasons, notification titles, option texts and registry descriptions that are
    HTML: every one is text on the page; no element of theirs exists, no script of theirs ran."""
    open_page(bench)
    search_for(bench, "harmless")
    greeting = option_form("plugins/hostile/greeting")
    wait(bench, lambda: find(bench, greeting).is_displayed(), "no hostile option")
    wait(bench, lambda: find(bench, '#results tr[data-key="xss"]').is_displayed(), "no result")
    wait(bench, lambda: state_of(bench, "broken") == "failed", "broken did not fail")
    assert text(bench, f"{greeting} .name") == f"Greeting {IMG}"
    assert text(bench, f"{greeting} .description") == SCRIPT
    assert text(bench, f"{greeting} .help") == LINK
    assert find(bench, f"{greeting} input").get_property("value") == IMG
    words = find(bench, f"{option_form('plugins/hostile/words')} textarea")
    assert words.get_property("value") == f"{SCRIPT}\n{IMG}"
    assert text(bench, cell("broken", "reason")).endswith(
        f"last stderr lines: broken {IMG} {SCRIPT}"
    )
    assert_nothing_of_theirs_ran(bench)


def assert_nothing_of_theirs_ran(bench: Bench) -> None:
    """No element the plugins' HTML would make exists, none of its script ran, and the page
    has its one script and no cookie."""
    found = bench.browser.execute_script(
        "return [document.querySelectorAll('main img, main script, main a, main iframe').length,"
        " typeof window.__pwned, document.cookie, document.scripts.length]"
    )
    assert found == [0, "undefined", "", 1]


def test_the_command_prints_the_address_and_serves_until_interrupted(bench: Bench) -> None:
    """`pm-plugins dashboard --json` (the command object, added to the group here)."""
    code = (
        "from cli.main import cli; from cli.dashboard import dashboard; "
        "cli.add_command(dashboard); cli()"
    )
    home = str(bench.booted.home.root)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--home", home, "dashboard", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]
        while lines[-1] not in ("}\n", ""):
            lines.append(proc.stdout.readline())
        printed = json.loads("".join(lines))
        port = printed["port"]
        assert printed["url"].startswith(f"http://127.0.0.1:{port}/?token=")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", printed["url"].removeprefix(f"http://127.0.0.1:{port}"))
        answer = conn.getresponse()
        assert answer.status == 200 and b'name="pm-csrf"' in answer.read()
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "dashboard stopped" in err


# -- refusals, over plain HTTP ---------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw(
    bench: Bench,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    host: str | None = "own",
) -> Answer:
    """One request exactly as given (`host`: the Host header, "own" for 127.0.0.1:PORT, None
    for none)."""
    port = bench.server.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", f"127.0.0.1:{port}" if host == "own" else host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None and "Content-Length" not in (headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def good_headers(bench: Bench) -> dict[str, str]:
    return {
        TOKEN_HEADER: bench.server.guard.token,
        CSRF_HEADER: bench.server.guard.csrf,
        "Content-Type": "application/json",
        "Origin": f"http://127.0.0.1:{bench.server.port}",
    }


def post(bench: Bench, path: str, data: Any, **changes: str | None) -> tuple[int, Any]:
    headers = good_headers(bench)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    answer = raw(bench, "POST", path, headers=headers, body=json.dumps(data).encode())
    return answer.status, answer.json()


DISABLE = {"module": "allowlist", "enabled": False}


def assert_still_running(bench: Bench) -> None:
    assert host_row(bench, "allowlist")["state"] == "running"


def test_without_the_token_nothing_is_served(bench: Bench) -> None:
    for path in ("/", "/api/events", "/static/app.js", "/static/style.css", "/favicon.ico"):
        assert raw(bench, "GET", path).status == 403, path
        assert raw(bench, "GET", f"{path}?token=wrong").status == 403, path
        assert raw(bench, "GET", f"{path}?token=").status == 403, path
    token = bench.server.guard.token
    assert raw(bench, "GET", f"/?token={token}&token={token}").status == 403  # one token, once
    for method in ("HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"):
        assert raw(bench, method, "/api/module").status == 403, method
        assert raw(bench, method, f"/api/module?token={token}").status == 405, method
    status, body = post(bench, "/api/module", DISABLE, X_PM_Token=None)
    assert status == 403 and body == {
        "error": "open the address `pm-plugins dashboard` printed (its token)"
    }
    near = token[:-1] + ("A" if token[-1] != "A" else "B")  # one character off, never equal
    status, _ = post(bench, "/api/module", DISABLE, X_PM_Token=near)
    assert status == 403
    assert_still_running(bench)
    page = raw(bench, "GET", f"/?token={token}")
    assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"


def test_a_wrong_host_header_is_refused_dns_rebinding(bench: Bench) -> None:
    port, token = bench.server.port, bench.server.guard.token
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", f"[::1]:{port}",
                 f"127.0.0.1:{port}.evil.example", f"localhost.:{port}"):  # fmt: skip
        answer = raw(bench, "GET", f"/?token={token}", host=host)
        assert answer.status == 421, host
        assert token.encode() not in answer.body
        status = raw(bench, "POST", "/api/module", host=host, headers=good_headers(bench),
                     body=json.dumps(DISABLE).encode()).status  # fmt: skip
        assert status == 421
    assert raw(bench, "GET", f"/?token={token}", host=None).status == 421
    assert raw(bench, "GET", f"/?token={token}", host=f"localhost:{port}").status == 200
    assert_still_running(bench)


def test_a_cross_origin_or_unprotected_post_changes_nothing(bench: Bench) -> None:
    evil = {"Origin": "http://evil.example"}
    assert post(bench, "/api/module", DISABLE, **evil)[0] == 403
    assert post(bench, "/api/module", DISABLE, Origin="null")[0] == 403
    other_port = f"http://127.0.0.1:{bench.server.port + 1}"
    assert post(bench, "/api/module", DISABLE, Origin=other_port)[0] == 403
    assert post(bench, "/api/module", DISABLE, X_PM_CSRF=None)[0] == 403
    assert post(bench, "/api/module", DISABLE, X_PM_CSRF="guessed")[0] == 403
    assert post(bench, "/api/module", DISABLE, X_PM_CSRF=bench.server.guard.token)[0] == 403
    assert post(bench, "/api/module", DISABLE, Sec_Fetch_Site="cross-site")[0] == 403
    assert post(bench, "/api/module", DISABLE, Sec_Fetch_Site="same-site")[0] == 403
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        assert post(bench, "/api/module", DISABLE, Content_Type=kind)[0] == 415, kind
    assert post(bench, "/api/module", DISABLE, Content_Type=None)[0] == 415
    token = bench.server.guard.token
    assert raw(bench, "GET", f"/api/module?token={token}").status == 404  # a GET changes nothing
    assert_still_running(bench)


def test_no_other_origin_may_read_an_answer(bench: Bench) -> None:
    token = bench.server.guard.token
    preflight = raw(
        bench,
        "OPTIONS",
        "/api/module",
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-pm-csrf,x-pm-token",
        },
    )
    assert preflight.status == 403  # a preflight carries no token; with one it is 405
    answers = [
        preflight,
        raw(bench, "GET", f"/?token={token}", headers={"Origin": "http://evil.example"}),
        raw(bench, "GET", "/"),
        raw(bench, "GET", f"/nothing?token={token}"),
    ]
    for answer in answers:
        assert not [h for h in answer.headers if h.lower().startswith("access-control-")]
        assert answer.headers["Content-Security-Policy"] == CSP
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Cross-Origin-Resource-Policy"] == "same-origin"
        assert "Set-Cookie" not in answer.headers


def test_the_live_stream_needs_the_token_and_carries_the_host(bench: Bench) -> None:
    assert raw(bench, "GET", "/api/events").status == 403
    port, token = bench.server.port, bench.server.guard.token
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/api/events?token={token}", headers={"Sec-Fetch-Site": "same-origin"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.readline() == b"event: state\n"
        data = json.loads(response.readline().removeprefix(b"data: "))
        assert {m["name"] for m in data["host"]["status"]["modules"]} >= {"allowlist", "broken"}
    finally:
        conn.close()
    cross = raw(
        bench, "GET", f"/api/events?token={token}", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status == 403


def test_static_files_are_a_fixed_table_not_paths(bench: Bench) -> None:
    token = bench.server.guard.token
    for path in ("/static/../server.py", "/static/%2e%2e/guard.py", "/static/..%2fserver.py",
                 "/static//etc/passwd", "/static/app.js/..", "/static/index.html",
                 "/../../../../etc/passwd", "/static/app.js%00.css", "/dashboard/server.py",
                 "//etc/passwd", "/static/"):  # fmt: skip
        answer = raw(bench, "GET", f"{path}?token={token}")
        assert answer.status == 404, path
        assert b"import" not in answer.body and b"root:" not in answer.body
    script = raw(bench, "GET", f"/static/app.js?token={token}")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")


def test_huge_and_malformed_bodies_are_refused_without_reading_them(bench: Bench) -> None:
    headers = good_headers(bench)
    big = raw(bench, "POST", "/api/module", headers={**headers, "Content-Length": str(10**9)},
              body=b"")  # fmt: skip
    assert big.status == 413 and big.json()["error"] == f"a change is at most {MAX_BODY} bytes"
    assert (
        raw(bench, "POST", "/api/module", headers={**headers, "Content-Length": "-1"}).status == 411
    )
    assert raw(bench, "POST", "/api/module", headers=headers).status == 411  # no length
    chunked = {**headers, "Transfer-Encoding": "chunked"}
    assert raw(bench, "POST", "/api/module", headers=chunked, body=b"0\r\n\r\n").status == 411
    for body in (b"{", b"[1]", b"\xff\xfe", b"[" * 60000 + b"]" * 60000, b'{"module": 1}'):
        answer = raw(bench, "POST", "/api/module", headers=headers, body=body[:MAX_BODY])
        assert answer.status == 400, body[:20]
    assert raw(bench, "POST", "/api/nothing", headers=headers, body=b"{}").status == 404
    assert_still_running(bench)


def test_nothing_logs_the_token(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    token = bench.server.guard.token
    with caplog.at_level(logging.DEBUG):
        raw(bench, "GET", f"/?token={token}")
        raw(bench, "GET", f"/?token={token}", host="evil.example")
        raw(bench, "GET", f"/nothing?token={token}")
    assert caplog.records and all(token not in r.getMessage() for r in caplog.records)
    assert bench.server.httpd.server_address[0] == "127.0.0.1"


def test_live_streams_are_bounded(bench: Bench) -> None:
    token = bench.server.guard.token
    streams: list[http.client.HTTPResponse] = []  # kept: a dropped one closes its socket
    try:
        for _ in range(12):
            conn = http.client.HTTPConnection("127.0.0.1", bench.server.port, timeout=10)
            conn.request("GET", f"/api/events?token={token}")
            streams.append(conn.getresponse())
        statuses = [s.status for s in streams]
    finally:
        for stream in streams:
            stream.close()
    assert statuses.count(200) <= 8 and statuses[-1] == 503  # at most 8 at once
    # a closed page frees its place within a second or so (not at the next keepalive)
    token_path = f"/api/events?token={token}"
    assert wait_for(lambda: stream_status(bench, token_path) == 200, 5)


def stream_status(bench: Bench, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", bench.server.port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


# -- refusals, from real pages of other origins ----------------------------------------------------

ATTACK = """<!doctype html><meta charset="utf-8"><title>attacker</title><body><script>
const target = "http://127.0.0.1:PORT", token = "TOKEN", body = JSON.stringify(BODY);
const results = [];
async function attempt(name, run) {
  try { results.push(name + ": " + await run()); } catch (err) { results.push(name + ": blocked"); }
}
(async () => {
  await attempt("no-cors post", () => fetch(target + "/api/module?token=" + token,
    {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body})
    .then((r) => r.type));
  await attempt("cors post", () => fetch(target + "/api/module?token=" + token, {method: "POST",
    headers: {"Content-Type": "application/json", "X-PM-Token": token, "X-PM-CSRF": "guess"},
    body}).then((r) => r.status));
  await attempt("read page", () => fetch(target + "/?token=" + token).then((r) => r.text()));
  await attempt("read stream", () => fetch(target + "/api/events?token=" + token)
    .then((r) => r.status));
  const form = document.createElement("form");
  form.method = "POST"; form.enctype = "text/plain"; form.target = "sink";
  form.action = target + "/api/module?token=" + token;
  const input = document.createElement("input");
  input.name = '{"module": "allowlist", "enabled": false, "x": "'; input.value = '"}';
  form.append(input);
  const frame = document.createElement("iframe"); frame.name = "sink";
  document.body.append(frame, form);
  form.submit();
  await new Promise((done) => setTimeout(done, 500));
  document.title = "done " + JSON.stringify(results);
})();
</script></body>"""


def attacker_page(bench: Bench) -> tuple[ThreadingHTTPServer, bytes]:
    page = (
        ATTACK.replace("PORT", str(bench.server.port))
        .replace("TOKEN", bench.server.guard.token)  # the worst case: the token leaked
        .replace("BODY", json.dumps(DISABLE))
        .encode()
    )
    return serve_page(page), page


@pytest.mark.parametrize("site", ["127.0.0.1", "localhost"])  # same site, another site
def test_a_page_of_another_origin_can_neither_drive_nor_read_the_dashboard(
    bench: Bench, site: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Even knowing the token: its blind posts (fetch no-cors, a text/plain form) are refused
    and its reads fail (no CORS header; CORP hides even the opaque answer)."""
    server, _ = attacker_page(bench)
    try:
        with caplog.at_level(logging.INFO, logger="pm_plugins.dashboard"):
            bench.browser.get(f"http://{site}:{server.server_address[1]}/")
            wait(bench, lambda: bench.browser.title.startswith("done "), "the attack hung")
        results = json.loads(bench.browser.title.removeprefix("done "))
    finally:
        server.shutdown()
        server.server_close()
    assert results == [
        "no-cors post: blocked",
        "cors post: blocked",
        "read page: blocked",
        "read stream: blocked",
    ]
    refused = [r.getMessage() for r in caplog.records if "refused POST" in r.getMessage()]
    assert (
        refused == ["dashboard refused POST /api/module: requests from other sites are refused"] * 2
    )
    assert_still_running(bench)


def test_a_rebound_name_reaches_nothing_even_with_the_token_and_csrf(bench: Bench) -> None:
    """DNS rebinding, in the browser: a page of evil.example whose name now points at
    127.0.0.1 is same-origin with evil.example:PORT, so it may send any header it likes."""
    port, guard = bench.server.port, bench.server.guard
    bench.browser.get(f"http://evil.example:{port}/?token={guard.token}")
    shown = bench.browser.find_element(By.TAG_NAME, "body").text
    assert json.loads(shown) == {"error": f"this server answers only as 127.0.0.1:{port}"}
    status = bench.browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/module', {method: 'POST', body: JSON.stringify(arguments[0]), headers: {"
        "'Content-Type': 'application/json', 'X-PM-Token': arguments[1], 'X-PM-CSRF': arguments[2]"
        "}}).then((r) => done(r.status), (e) => done(String(e)));",
        DISABLE,
        guard.token,
        guard.csrf,
    )
    assert status == 421
    assert_still_running(bench)


def recording_server(seen: list[dict[str, str]]) -> ThreadingHTTPServer:
    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_leaving_the_page_tells_nobody_the_token(bench: Bench) -> None:
    """No Referer carries the page's address (and its token) to where the user goes next."""
    seen: list[dict[str, str]] = []
    server = recording_server(seen)
    try:
        open_page(bench)
        other = f"http://127.0.0.1:{server.server_address[1]}/next"
        bench.browser.execute_script("location.href = arguments[0]", other)
        assert wait_for(lambda: seen, 10)
    finally:
        server.shutdown()
        server.server_close()
    assert "Referer" not in seen[0]
    assert all(bench.server.guard.token not in value for value in seen[0].values())


def test_a_client_that_never_finishes_its_request_is_dropped(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard_server._Handler, "timeout", 0.5)
    with socket.create_connection(("127.0.0.1", bench.server.port), timeout=10) as sock:
        sock.sendall(b"GET /?token=")  # and nothing more
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
    assert time.monotonic() - started < 5


def console(bench: Bench) -> list[dict[str, Any]]:
    """What pages said on the browser's console since the last call."""
    said: list[dict[str, Any]] = bench.browser.get_log("browser")  # type: ignore[no-untyped-call]
    return said


def test_the_page_runs_under_its_csp_without_a_console_error(bench: Bench) -> None:
    """A CSP violation (an inline script or style of ours) would be a console error."""
    console(bench)  # forget what earlier pages said
    open_page(bench)
    search_for(bench, "hosts")
    wait(bench, lambda: find(bench, '#results tr[data-key="hosts"]').is_displayed(), "results")
    assert [e for e in console(bench) if e["level"] in ("SEVERE", "WARNING")] == []


def test_the_page_says_when_no_host_is_booted(bench: Bench, tmp_path: Path) -> None:
    server = DashboardServer(Home(tmp_path / "nohost"))
    server.start()
    try:
        bench.browser.get(server.url)
        wait(bench, lambda: text(bench, "#connection") == "live", "the page never went live")
        error = find(bench, "#host-error")
        wait(bench, error.is_displayed, "no banner")
        assert error.text.startswith("no host is running for this state root")
        assert bench.browser.find_elements(By.CSS_SELECTOR, "#modules tbody tr") == []
    finally:
        server.close()


def test_the_readmes_screenshot_is_taken_by_its_script(tmp_path: Path) -> None:
    missing = browser_missing()
    if missing:
        pytest.fail(missing)
    out = dashboard_screenshot.take(tmp_path / "dashboard.png")
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
