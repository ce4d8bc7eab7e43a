"""The fallback Go stack, end to end: our Go host (go-plugin v1.5.1's client) drives our Go
plugins (go-plugin v1.5.1's server with a framework that reproduces PR #834's).

The PR's own Go code cannot be fetched (see gobuild), so these tests first check that the
fallback peers themselves behave as the PR's do; other interop tests then pair them with
pm-plugins' Python host and plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.interop import gobuild

if not gobuild.go_available():
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but 'go' is not on PATH: the Go interop peers cannot be built")
    pytest.skip(
        "'go' is not on PATH: the Go interop peers (go-plugin v1.5.1 fallback) cannot be built",
        allow_module_level=True,
    )

HOST_TIMEOUT = 60


@pytest.fixture(scope="module")
def peers() -> dict[str, Path]:
    return gobuild.build_peers()


def run_host(peers: dict[str, Path], plugin: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(peers["host"]), "-plugin", str(peers[plugin]), "-name", plugin, *args],
        capture_output=True,
        text=True,
        timeout=HOST_TIMEOUT,
        check=False,
    )
    assert proc.stdout, f"host printed nothing (exit {proc.returncode}); stderr:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == 0, f"host failed: {json.dumps(result, indent=2)}\n{proc.stderr}"
    assert result["errors"] == []
    assert result["started"] and result["configured"]
    assert result["plugin"]["protocol"] == "grpc"
    assert result["shutdown_error"] is None
    assert result["exited"] is True
    return result


def test_fallback_go_host_drives_go_decider(peers: dict[str, Path]) -> None:
    result = run_host(
        peers,
        "decider",
        "-types",
        "decider",
        "-decide",
        "/usr/bin/curl|example.com.",
        "-decide",
        "/usr/bin/curl|safing.io.",
        "-decide",
        "/usr/bin/firefox|other.example.",
    )
    decisions = [(d["verdict"], d["reason"], d["error"]) for d in result["decisions"]]
    assert decisions == [
        ("VERDICT_ACCEPT", "allowed", None),
        ("VERDICT_ACCEPT", "allowed", None),
        ("VERDICT_UNDECIDED", "", None),
    ]
    # log.Printf goes to the plugin's real stderr, which go-plugin's client reads.
    firefox_id = result["decisions"][2]["id"]
    wanted = f"ignoring decision request for {firefox_id}: other.example."
    assert any(line.endswith(wanted) for line in result["stderr"]), result["stderr"]
    assert any("[DEBUG] configuration request received" in line for line in result["stderr"])
    assert any("[DEBUG] shutdown request received" in line for line in result["stderr"])


def test_fallback_go_host_bench_reports_percentiles(peers: dict[str, Path]) -> None:
    result = run_host(peers, "decider", "-types", "decider", "-bench-decide", "100")
    bench = result["bench"]
    assert bench["n"] == 100 and bench["warmup"] == 200 and bench["errors"] == 0
    assert 0 < bench["p50_us"] <= bench["p99_us"]
    assert bench["mean_us"] > 0


def test_fallback_go_host_drives_go_resolver(peers: dict[str, Path]) -> None:
    result = run_host(
        peers,
        "resolver",
        "-types",
        "resolver",
        "-resolve",
        "interop.example.|A",
        "-resolve",
        "interop.example.|AAAA",
        "-resolve",
        "interop.example.|TXT",
        "-resolve",
        "elsewhere.example.|A",
    )
    a, aaaa, txt, other = result["resolves"]
    expected = [
        (a, 1, bytes([192, 0, 2, 10])),
        (aaaa, 28, bytes.fromhex("20010db8000000000000000000000010")),
        (txt, 16, b"hello from go"),
    ]
    for answer, rtype, data in expected:
        assert answer["handled"] is True and answer["rcode"] == 0 and answer["error"] is None
        assert answer["records"] == [
            {
                "name": "interop.example.",
                "type": rtype,
                "class": 1,
                "ttl": 60,
                "data_hex": data.hex(),
            }
        ]
    # Not handled: the response field is absent, not an empty answer.
    assert other["handled"] is False and other["records"] == [] and other["error"] is None


def test_fallback_go_host_drives_go_reporter(peers: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.jsonl"
    result = run_host(
        peers,
        "reporter",
        "-types",
        "reporter",
        "-config",
        json.dumps({"path": str(out)}),
        "-report",
        "c1|example.com.|ACCEPT",
        "-report",
        "c2|bad.example.|BLOCK",
    )
    assert [r["error"] for r in result["reports"]] == [None, None]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [
        {"id": "c1", "domain": "example.com.", "verdict": "VERDICT_ACCEPT"},
        {"id": "c2", "domain": "bad.example.", "verdict": "VERDICT_BLOCK"},
    ]


def test_fallback_go_init_error_is_configure_error(peers: dict[str, Path]) -> None:
    # No static config: the reporter's OnInit hook fails, so Configure fails with its text.
    proc = subprocess.run(
        [str(peers["host"]), "-plugin", str(peers["reporter"]), "-types", "reporter"],
        capture_output=True,
        text=True,
        timeout=HOST_TIMEOUT,
        check=False,
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert result["configured"] is False
    assert "no static configuration available" in result["configure_error"]


def test_fallback_go_plugin_refuses_to_run_without_cookie(peers: dict[str, Path]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PORTMASTER_PLUGIN"}
    proc = subprocess.run(
        [str(peers["decider"])], capture_output=True, text=True, timeout=10, env=env, check=False
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "plugin" in proc.stderr.lower()


def run_services(peers: dict[str, Path], basedir: Path, *extra: str) -> tuple[dict[str, Any], Any]:
    name = "services"
    out = basedir / f"services-{name}.json"
    result = run_host(
        peers, name, "-basedir", str(basedir), "-wait", "15s", "-wait-file", str(out), *extra
    )
    return result, json.loads(out.read_text())


def test_fallback_go_services_plugin_unprivileged(peers: dict[str, Path], tmp_path: Path) -> None:
    result, seen = run_services(peers, tmp_path)
    assert seen["errors"] == []
    assert seen["privileged"] is False and seen["portmaster_version"] == "1.0.0-interop"
    assert seen["registered"] is True
    assert seen["read_key"] == "greeting" and seen["greeting"] == "hi"
    assert seen["watch"] == {"key": "plugins/services/greeting", "value": "changed"}
    assert seen["notification_action"] == "ok"
    assert seen["plugin_manager"] is False and seen["plugins"] == []
    # The PR's host only prefixes an unprivileged plugin's key, so this misses.
    assert seen["other_secret"]["value"] is None
    assert "plugins/services/plugins/other/secret" in seen["other_secret"]["error"]

    config = result["config"]
    assert [(o["key"], o["type"], o["default"]) for o in config["registered"]] == [
        ("plugins/services/greeting", "OPTION_TYPE_STRING", "hi")
    ]
    assert config["watches"] == [{"requested": ["greeting"], "keys": ["plugins/services/greeting"]}]
    assert config["changes"] == [{"key": "plugins/services/greeting", "value": "changed"}]
    assert [n["answered"] for n in result["notifications"]] == ["ok"]
    assert result["plugin_manager"] == []


def test_fallback_go_services_plugin_privileged(peers: dict[str, Path], tmp_path: Path) -> None:
    result, seen = run_services(peers, tmp_path, "-privileged")
    assert seen["errors"] == []
    assert seen["privileged"] is True
    assert seen["read_key"] == "plugins/services/greeting" and seen["greeting"] == "hi"
    assert seen["watch"] == {"key": "plugins/services/greeting", "value": "changed"}
    assert seen["notification_action"] == "ok"
    assert seen["plugin_manager"] is True
    assert seen["plugins"] == ["services", "hosts", "allowlist"]
    assert seen["other_secret"] == {"value": "s3cret", "error": None}
    assert result["plugin_manager"] == [
        {"call": "ListPlugins", "plugins": ["services", "hosts", "allowlist"]}
    ]
