"""Build the Go test peers in tests/interop/go: plugins and a host speaking the PR's wire.

Why this exists: the plan was to run safing/portmaster PR #834's own Go code (its
`framework`, its example plugin and its loader) against pm-plugins. The Go module proxy
refuses github.com/safing/portmaster and github.com/safing/portbase and github.com is out
of reach, so that code cannot be a dependency. The fallback, as the project's issue
prescribes: the real hashicorp/go-plugin v1.5.1 from the proxy, Go stubs generated from
our own proto/portmaster/*.proto (wire-identical to the PR's), and a framework, plugins
and a host written here that reproduce the PR's behaviour.

`build_peers()` generates the stubs (protoc from grpcio-tools; protoc-gen-go and
protoc-gen-go-grpc installed with `go install` at pinned versions) and runs `go build`
into tests/interop/go/bin. It is cached (nothing runs when no input is newer than the
last successful build) and safe to call from several processes at once (a file lock).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GO_DIR = REPO / "tests" / "interop" / "go"
BIN_DIR = GO_DIR / "bin"
GEN_DIR = GO_DIR / "gen"
PROTO_ROOT = REPO / "proto"
PROTO_DIR = PROTO_ROOT / "portmaster"

MODULE = "pmplugins.test/interop"
STUB_PACKAGE = f"{MODULE}/gen/proto"

# Generator versions that match the module's google.golang.org/protobuf v1.31.0 and
# google.golang.org/grpc v1.58.2 (the PR's pins).
TOOLS = {
    "protoc-gen-go": "google.golang.org/protobuf/cmd/protoc-gen-go@v1.31.0",
    "protoc-gen-go-grpc": "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.3.0",
}
TOOLS_DIR = BIN_DIR / "tools"

PEERS = ("decider", "resolver", "reporter", "services", "host")
PACKAGES = ("./host", *(f"./plugins/{name}" for name in PEERS if name != "host"))
STAMP = BIN_DIR / ".built"
LOCK = BIN_DIR / ".lock"


def go_available() -> bool:
    """True when a `go` command is on PATH."""
    return shutil.which("go") is not None


def build_peers() -> dict[str, Path]:
    """Build (if stale) and return the Go peers' executables by name.

    Keys: decider, resolver, reporter, services (plugins) and host.
    Raises RuntimeError carrying the tool's output when a step fails.
    """
    if not go_available():
        raise RuntimeError("the Go toolchain ('go') is not on PATH")
    peers = {name: BIN_DIR / name for name in PEERS}
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    with _locked(LOCK):
        if not _is_fresh(peers):
            _generate_stubs()
            _run(["go", "build", "-buildvcs=false", "-o", f"{BIN_DIR}{os.sep}", *PACKAGES])
            missing = [str(path) for path in peers.values() if not path.is_file()]
            if missing:
                raise RuntimeError(f"go build succeeded but did not produce {', '.join(missing)}")
            STAMP.touch()
    return peers


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _inputs() -> Iterator[Path]:
    yield Path(__file__).resolve()
    yield GO_DIR / "go.mod"
    yield GO_DIR / "go.sum"
    yield from PROTO_DIR.glob("*.proto")
    for path in GO_DIR.rglob("*"):
        if path.is_relative_to(GEN_DIR) or path.is_relative_to(BIN_DIR):
            continue
        # A directory's mtime changes when a file in it is added or removed.
        if path.suffix == ".go" or (path.is_dir() and not path.name.startswith(".")):
            yield path


def _is_fresh(peers: dict[str, Path]) -> bool:
    if not STAMP.is_file() or not all(path.is_file() for path in peers.values()):
        return False
    built = STAMP.stat().st_mtime
    return all(path.stat().st_mtime <= built for path in _inputs() if path.exists())


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never let the go.mod line trigger a toolchain download: use the go on PATH.
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def _run(cmd: Sequence[str | Path], cwd: Path = GO_DIR, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        [str(part) for part in cmd],
        cwd=cwd,
        env=env if env is not None else _go_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        shown = " ".join(str(part) for part in cmd)
        raise RuntimeError(f"`{shown}` failed (exit {proc.returncode}):\n{proc.stdout}")


def _install_tools() -> dict[str, Path]:
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    env = _go_env()
    env["GOBIN"] = str(TOOLS_DIR)
    tools: dict[str, Path] = {}
    for name, spec in TOOLS.items():
        path = TOOLS_DIR / name
        version_file = TOOLS_DIR / f"{name}.version"
        if not (path.is_file() and version_file.is_file() and version_file.read_text() == spec):
            _run(["go", "install", spec], env=env)
            version_file.write_text(spec)
        tools[name] = path
    return tools


def _protoc_python() -> str:
    """A Python that has grpc_tools: this one, else the repository's .venv."""
    if importlib.util.find_spec("grpc_tools") is not None:
        return sys.executable
    venv_python = REPO / ".venv" / "bin" / "python"
    if venv_python.is_file():
        return str(venv_python)
    raise RuntimeError("grpcio-tools is not installed: pip install -e '.[dev]'")


def _generate_stubs() -> None:
    """Generate gen/proto from proto/portmaster into a scratch dir, then swap it in."""
    tools = _install_tools()
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files in {PROTO_DIR}")
    mappings: list[str] = []
    for proto in protos:
        rel = proto.relative_to(PROTO_ROOT).as_posix()
        mappings += [f"--go_opt=M{rel}={STUB_PACKAGE}", f"--go-grpc_opt=M{rel}={STUB_PACKAGE}"]
    GO_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gen-", dir=GO_DIR) as scratch:
        _run(
            [
                _protoc_python(),
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"--plugin=protoc-gen-go={tools['protoc-gen-go']}",
                f"--plugin=protoc-gen-go-grpc={tools['protoc-gen-go-grpc']}",
                f"--go_out={scratch}",
                f"--go_opt=module={MODULE}",
                f"--go-grpc_out={scratch}",
                f"--go-grpc_opt=module={MODULE}",
                *mappings,
                *(str(proto) for proto in protos),
            ],
            cwd=REPO,
            env=dict(os.environ),
        )
        fresh = Path(scratch) / "gen" / "proto"
        if not fresh.is_dir():
            raise RuntimeError(f"protoc wrote no Go package at {fresh}")
        target = GEN_DIR / "proto"
        GEN_DIR.mkdir(exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        fresh.rename(target)
