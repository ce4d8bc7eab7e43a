"""The SDK stands alone (issue 15 item 3): `sdk/` builds the `pm-plugin` wheel, which holds
only `pm_plugin` (with `py.typed` and the stubs' types) and needs only grpcio and protobuf; in
a fresh virtual environment outside this repository, with that wheel and no host, a new
plugin's test passes and `mypy --strict` finds the SDK's types.

The fresh environment installs grpcio, protobuf, pytest and mypy from PyPI (pip's cache
usually serves them: `make` installed the same versions)."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parent.parent / "sdk"


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, SDK, cwd=out)
    (built,) = out.glob("pm_plugin-*.whl")
    return built


def test_the_wheel_holds_the_sdk_alone_with_its_types(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(archive.read(meta_name))
    tops = {n.split("/")[0] for n in names}
    assert tops == {"pm_plugin", meta_name.split("/")[0]}
    assert "pm_plugin/py.typed" in names
    assert "pm_plugin/testing/__init__.py" in names and "pm_plugin/scaffold.py" in names
    assert "pm_plugin/wire/portmaster/network_pb2.pyi" in names
    assert meta["Name"] == "pm-plugin"
    requires = sorted(r.split(";")[0].replace(" ", "") for r in meta.get_all("Requires-Dist") or [])
    assert requires == ["grpcio-health-checking==1.85.1", "grpcio==1.85.1", "protobuf<8,>=7.35.1"]


def test_a_plugin_outside_the_repository_tests_and_type_checks_with_the_sdk_alone(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel,
        "pytest", "mypy", cwd=tmp_path)  # fmt: skip
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    for leaked in ("PYTHONPATH", "PM_PLUGINS_HOME"):
        env.pop(leaked, None)
    work = tmp_path / "author"
    work.mkdir()
    absent = subprocess.run(
        [python, "-c", "import host"], cwd=work, env=env, capture_output=True, text=True
    )
    assert absent.returncode != 0 and "No module named 'host'" in absent.stderr
    run(python, "-m", "pm_plugin.scaffold", "hello", "--type", "decider", cwd=work, env=env)
    assert "1 passed" in run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "hello",
                             cwd=work, env=env)  # fmt: skip
    (work / "hello" / "hello_plugin.py").write_text((work / "hello" / "plugin").read_text())
    checked = run(python, "-m", "mypy", "--strict", "--no-incremental", "hello/test_hello.py",
                  "hello/hello_plugin.py", cwd=work, env=env)  # fmt: skip
    assert "Success: no issues found in 2 source files" in checked
