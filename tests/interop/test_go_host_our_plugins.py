"""The Go host, our plugins: the fallback Go host (go-plugin v1.5.1's client with the PR's loader
halves, see gobuild) drives pm-plugins' example plugins, written with our `pm_plugin` SDK.

The host starts `examples/plugins/<name>/plugin` itself (`exec.Command`); the scripts' shebang
is `#!/usr/bin/env python3`, so the PATH handed to the host starts with this venv's bin.
Everything is read from the host's one JSON report (see `go/README.md`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
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

EXAMPLES = gobuild.REPO / "examples" / "plugins"
HOST_TIMEOUT = 60
#: The allowlist's rules without a value set: the PR's example decider's.
DEFAULT_RULES = ["/usr/bin/curl example.com.", "/usr/bin/curl safing.io."]


@pytest.fixture(scope="module")
def peers() -> dict[str, Path]:
    return gobuild.build_peers()


def host_env() -> dict[str, str]:
    """This environment, with the venv's bin first so the plugins' shebang finds its python."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def example(name: str) -> Path:
    plugin = EXAMPLES / name / "plugin"
    assert plugin.is_file(), f"the example plugin {name} is missing: {plugin}"
    return plugin


def start_host(
    peers: dict[str, Path], plugin: str, basedir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(peers["host"]),
            "-plugin",
            str(example(plugin)),
            "-name",
            plugin,
            "-basedir",
            str(basedir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=HOST_TIMEOUT,
        env=host_env(),
        check=False,
    )


def run_host(peers: dict[str, Path], plugin: str, basedir: Path, *args: str) -> dict[str, Any]:
    """Run the Go host on an example plugin; the run must have been clean from start to exit."""
    proc = start_host(peers, plugin, basedir, *args)
    assert proc.stdout, f"host printed nothing (exit {proc.returncode}); stderr:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    shown = f"{json.dumps(result, indent=2)}\n{proc.stderr}"
    assert proc.returncode == 0, f"host failed: {shown}"
    assert result["errors"] == [], shown
    assert result["started"] is True and result["plugin"]["protocol"] == "grpc", shown
    # Configure worked, and with it the backchannel (the host's ConnInfo on the broker).
    assert result["configured"] is True and result["configure_error"] is None, shown
    # Clean shutdown: BaseService.Shutdown answered, then the process ended.
    assert result["shutdown_error"] is None, shown
    assert result["exited"] is True, shown
    return result


def messages(result: dict[str, Any]) -> list[str]:
    """The plugin's stderr lines: our SDK writes hclog JSON lines; their messages."""
    found = []
    for line in result["stderr"]:
        try:
            entry = json.loads(line)
        except ValueError:
            found.append(line)
            continue
        found.append(entry["@message"] if isinstance(entry, dict) else line)
    return found


# --- allowlist (decider) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "types_flag",
    [
        pytest.param(("-clean-types",), id="clean-types"),
        # The PR's host sends plugin_types [0, 2] for ["decider"]: our SDK must tolerate it.
        pytest.param((), id="pr-quirk-leading-zero-types"),
    ],
)
def test_fallback_go_host_runs_our_allowlist(
    peers: dict[str, Path], tmp_path: Path, types_flag: tuple[str, ...]
) -> None:
    result = run_host(
        peers,
        "allowlist",
        tmp_path,
        "-types",
        "decider",
        *types_flag,
        "-decide",
        "/usr/bin/curl|example.com.",
        "-decide",
        "/usr/bin/curl|safing.io.",
        "-decide",
        "/usr/bin/firefox|example.com.",
        "-decide",
        "/usr/bin/curl|other.example.",
    )
    assert result["plugin"]["types"] == ["decider"]
    decisions = [(d["verdict"], d["reason"], d["error"]) for d in result["decisions"]]
    assert decisions == [
        ("VERDICT_ACCEPT", "allowed", None),
        ("VERDICT_ACCEPT", "allowed", None),
        ("VERDICT_UNDECIDED", "", None),
        ("VERDICT_UNDECIDED", "", None),
    ]
    ids = [d["id"] for d in result["decisions"]]
    assert f"ignoring decision request for {ids[2]}: example.com." in messages(result)
    assert f"ignoring decision request for {ids[3]}: other.example." in messages(result)

    # Our SDK called the Go host's ConfigService back over the broker, inside Configure:
    # registered its option (filed under plugins/allowlist/), watched it and read it.
    config = result["config"]
    assert config["registered"] == [
        {
            "key": "plugins/allowlist/rules",
            "type": "OPTION_TYPE_STRING_ARRAY",
            "default": DEFAULT_RULES,
        }
    ]
    assert config["reads"] == [
        {
            "requested": "rules",
            "key": "plugins/allowlist/rules",
            "value": DEFAULT_RULES,
            "error": None,
        }
    ]
    assert config["watches"] == [{"requested": ["rules"], "keys": ["plugins/allowlist/rules"]}]
    # The Go host changes only watched string options; the rules are a string array.
    assert config["changes"] == []
    assert result["notifications"] == [] and result["plugin_manager"] == []
    assert "allowlist started with 2 rules" in messages(result)


def test_fallback_go_host_benchmarks_our_allowlist(peers: dict[str, Path], tmp_path: Path) -> None:
    result = run_host(peers, "allowlist", tmp_path, "-types", "decider", "-bench-decide", "100")
    bench = result["bench"]
    assert bench["n"] == 100 and bench["warmup"] == 200 and bench["errors"] == 0
    assert 0 < bench["p50_us"] <= bench["p99_us"]


# --- hosts (resolver) ----------------------------------------------------------------------


def test_fallback_go_host_runs_our_hosts_resolver(peers: dict[str, Path], tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "# test hosts file\n"
        "192.0.2.7    box.test box   # the box\n"
        "2001:db8::7  box.test\n"
        "198.51.100.9 other.test\n"
    )
    result = run_host(
        peers,
        "hosts",
        tmp_path,
        "-types",
        "resolver",
        "-config",
        json.dumps({"path": str(hosts)}),
        "-resolve",
        "box.test.|A",
        "-resolve",
        "BOX.Test.|AAAA",
        "-resolve",
        "other.test.|A",
        "-resolve",
        "box.test.|TXT",
        "-resolve",
        "unknown.test.|A",
    )
    box_a, box_aaaa, other_a, box_txt, unknown = result["resolves"]
    for answer in result["resolves"]:
        assert answer["error"] is None
    expected = [
        (box_a, "box.test.", 1, bytes([192, 0, 2, 7])),
        (box_aaaa, "BOX.Test.", 28, bytes.fromhex("20010db8000000000000000000000007")),
        (other_a, "other.test.", 1, bytes([198, 51, 100, 9])),
    ]
    for answer, name, rtype, data in expected:
        assert answer["handled"] is True and answer["rcode"] == 0
        assert answer["records"] == [
            {"name": name, "type": rtype, "class": 1, "ttl": 10, "data_hex": data.hex()}
        ]
    # A known name without records of that type: handled, NOERROR, no answers.
    assert box_txt["handled"] is True and box_txt["rcode"] == 0 and box_txt["records"] == []
    # An unknown name: not handled (the response field absent), left to the next resolver.
    assert unknown["handled"] is False and unknown["rcode"] is None and unknown["records"] == []


# --- history (reporter) --------------------------------------------------------------------


def test_fallback_go_host_runs_our_history_reporter(peers: dict[str, Path], tmp_path: Path) -> None:
    # A relative path: the plugin files it under the base directory Configure gave it.
    result = run_host(
        peers,
        "history",
        tmp_path,
        "-types",
        "reporter",
        "-config",
        json.dumps({"database": "db/history.sqlite"}),
        "-report",
        "c1|example.com.|ACCEPT",
        "-report",
        "c2|bad.example.|VERDICT_BLOCK",
        "-report",
        "c3|drop.example.|4",
    )
    assert [(r["id"], r["error"]) for r in result["reports"]] == [
        ("c1", None),
        ("c2", None),
        ("c3", None),
    ]
    database = tmp_path / "db" / "history.sqlite"
    assert database.is_file()
    # The plugin closed the database on shutdown; the rows are there once the host exits.
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT id, binary, domain, ip, port, verdict, time > 0 FROM connections ORDER BY id"
        ).fetchall()
    assert rows == [
        ("c1", "/usr/bin/curl", "example.com.", "198.51.100.7", 443, "ACCEPT", 1),
        ("c2", "/usr/bin/curl", "bad.example.", "198.51.100.7", 443, "BLOCK", 1),
        ("c3", "/usr/bin/curl", "drop.example.", "198.51.100.7", 443, "DROP", 1),
    ]


def test_fallback_go_host_gets_our_init_error_as_configure_error(
    peers: dict[str, Path], tmp_path: Path
) -> None:
    # history's on_init refuses a config that is not an object: Configure fails with its text,
    # and the PR's loader kills the plugin at once.
    proc = start_host(peers, "history", tmp_path, "-types", "reporter", "-config", "[1, 2]")
    result = json.loads(proc.stdout)
    assert proc.returncode == 1, result
    assert result["started"] is True and result["configured"] is False
    assert "must be an object" in result["configure_error"]


# --- logging -------------------------------------------------------------------------------


def test_fallback_go_host_keeps_our_plugin_log_levels(
    peers: dict[str, Path], tmp_path: Path
) -> None:
    # -v: go-plugin's client logs each plugin stderr line at the level it parsed, on the
    # host's stderr, as "[INFO]  host.plugin: <message>: <key=value ...>".
    proc = start_host(peers, "allowlist", tmp_path, "-types", "decider", "-v")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "allowlist started with" in line]
    assert lines, proc.stderr
    assert "[INFO]" in lines[0] and "host.plugin: allowlist started with 2 rules" in lines[0]
