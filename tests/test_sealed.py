"""The loader executes exactly the bytes it verified: sealed memfd copies, run as real processes."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from host.process import PluginProcess
from loader.errors import LoaderError
from loader.sealed import (
    F_GET_SEALS,
    F_SEAL_EXEC,
    REQUIRED_SEALS,
    SealedExecutable,
    read_once,
    seal,
)
from tests.conftest import FAKE_PLUGIN

SHELL_SCRIPT = b'#!/bin/sh\necho "shell says $1"\n'
PYTHON_SCRIPT = b'#!/usr/bin/env python3\nimport sys\nprint("python says", sys.argv[1])\n'
MAX = 1 << 20


def run(sealed: SealedExecutable, *args: str) -> str:
    done = subprocess.run(
        [*sealed.argv, *args],
        pass_fds=sealed.pass_fds,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout.decode()


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o755)
    return path


def test_a_sealed_shell_script_runs(tmp_path: Path) -> None:
    data = read_once(write_file(tmp_path / "plugin", SHELL_SCRIPT), MAX)
    with seal(data, "shell") as sealed:
        assert run(sealed, "hello") == "shell says hello\n"


def test_a_sealed_python_script_runs_through_env(tmp_path: Path) -> None:
    data = read_once(write_file(tmp_path / "plugin", PYTHON_SCRIPT), MAX)
    with seal(data, "python") as sealed:
        assert run(sealed, "hello") == "python says hello\n"


def test_a_sealed_elf_binary_runs() -> None:
    echo = shutil.which("echo")
    assert echo is not None
    data = read_once(Path(echo).resolve(), 64 << 20)
    assert data.startswith(b"\x7fELF")
    with seal(data, "echo") as sealed:
        assert run(sealed, "from", "memory") == "from memory\n"


def test_the_descriptor_must_be_passed_to_the_child() -> None:
    with seal(SHELL_SCRIPT, "shell") as sealed, pytest.raises(FileNotFoundError):
        subprocess.run([*sealed.argv, "x"], capture_output=True, check=False)


def test_the_sealed_bytes_cannot_be_changed() -> None:
    with seal(SHELL_SCRIPT, "shell") as sealed:
        seals = fcntl.fcntl(sealed.fd, F_GET_SEALS)
        assert seals & REQUIRED_SEALS == REQUIRED_SEALS
        if seals & F_SEAL_EXEC:  # Linux >= 6.3: the exec bits are pinned too
            with pytest.raises(PermissionError):
                os.fchmod(sealed.fd, 0o444)  # the exec bits cannot be dropped or added
        with pytest.raises(OSError):
            os.write(sealed.fd, b"#!/bin/sh\necho swapped\n")  # the host's copy is read-only
        writable = os.open(f"/proc/self/fd/{sealed.fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            with pytest.raises(PermissionError):
                os.pwrite(writable, b"#!/bin/sh\necho swapped\n", 0)
            with pytest.raises(PermissionError):
                os.write(writable, b"x")
            with pytest.raises(PermissionError):
                os.ftruncate(writable, 0)
            with pytest.raises(PermissionError):
                os.ftruncate(writable, len(SHELL_SCRIPT) + 1)
            with pytest.raises(PermissionError):
                fcntl.fcntl(writable, fcntl.F_ADD_SEALS, 0)  # F_SEAL_SEAL: seals are final
        finally:
            os.close(writable)
        assert run(sealed, "still") == "shell says still\n"


def test_a_swap_of_the_artifact_after_verification_does_not_run_the_swapped_bytes(
    tmp_path: Path,
) -> None:
    path = write_file(tmp_path / "plugin", PYTHON_SCRIPT)
    data = read_once(path, MAX)  # ... the caller verifies `data` here ...
    swapped = write_file(tmp_path / "swapped", b"#!/bin/sh\necho swapped\n")
    os.replace(swapped, path)
    with seal(data, "python") as sealed:
        assert run(sealed, "original") == "python says original\n"
    assert subprocess.run([path], capture_output=True, check=True).stdout == b"swapped\n"


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    target = write_file(tmp_path / "plugin", SHELL_SCRIPT)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(LoaderError, match="symbolic link"):
        read_once(link, MAX)


def test_an_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write_file(tmp_path / "plugin", SHELL_SCRIPT)
    assert read_once(path, len(SHELL_SCRIPT)) == SHELL_SCRIPT
    with pytest.raises(LoaderError, match=f"larger than {len(SHELL_SCRIPT) - 1} bytes"):
        read_once(path, len(SHELL_SCRIPT) - 1)


def test_a_non_regular_or_missing_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(LoaderError, match="not a regular file"):
        read_once(fifo, MAX)
    with pytest.raises(LoaderError, match="not a regular file"):
        read_once(tmp_path, MAX)
    with pytest.raises(LoaderError, match="cannot be opened"):
        read_once(tmp_path / "missing", MAX)


def test_close_is_idempotent() -> None:
    sealed = seal(SHELL_SCRIPT, "shell")
    fd = sealed.fd
    sealed.close()
    sealed.close()
    assert sealed.closed
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(RuntimeError):
        _ = sealed.argv


def test_a_real_plugin_starts_from_its_sealed_bytes() -> None:
    with seal(read_once(FAKE_PLUGIN, MAX), "fake") as sealed:
        proc = PluginProcess("fake", (*sealed.argv, "normal"), pass_fds=sealed.pass_fds)
        try:
            handshake = proc.start()
            assert handshake.address
            assert proc.server_pid is not None  # the plugin itself, inside its sandbox
            exe = os.readlink(f"/proc/{proc.server_pid}/fd/{sealed.fd}")
            assert exe.startswith("/memfd:fake")
        finally:
            proc.stop()
