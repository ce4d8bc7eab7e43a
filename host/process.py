"""One plugin process: start it, read its handshake, watch it, stop it. No gRPC here.
`PluginProcess` follows go-plugin's client lifecycle, one named step per method:

- `start()` makes a 0700 socket directory, starts the executable in its own session and
  sandbox (minimal environment, the cookie) and waits, bounded, for the handshake line.
- stderr goes line by line to the host's log and a bounded tail; an exit watcher reports a
  crash at once (exit code or signal).
- `stop()` escalates SIGTERM -> SIGKILL on the whole group after a grace period, reaps the
  child, and always removes the socket directory and cgroup. Safe to call twice.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from host.confine import spawn
from host.declared import inside, open_path
from host.errors import HandshakeError, PluginProcessError
from host.handshake import (
    APP_PROTOCOL_VERSION,
    MAX_HANDSHAKE_LINE,
    Handshake,
    parse_handshake,
)
from host.peers import descends_from, socket_peer_pid
from host.plugin_env import minimal_environment
from host.plugin_text import loggable
from host.sandbox import Enforced, Sandboxed, SandboxSettings, give_tree, sandbox_command
from loader.capabilities import Capabilities

log = logging.getLogger("pm_plugins.plugin")

_MINIMUM, _REQUIRED = Capabilities(), SandboxSettings()
#: Lines of stderr kept for error messages and status.
STDERR_TAIL = 50
#: Longest stderr/stdout line kept after the handshake (longer lines are cut).
MAX_LOG_LINE = 16 * 1024
#: hclog levels -> logging levels; lines that are not hclog JSON are debug, as go-plugin does.
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}

#: How a sealed copy's path appears in a plugin's own tracebacks (shown as its release file).
_SEALED_PATH = re.compile(r"/proc/self/fd/\d+")
_LEVEL_PREFIX = re.compile(r"\[(TRACE|DEBUG|INFO|WARN|ERROR)\] ?")


def describe_exit(returncode: int, sandboxed: bool = False) -> str:
    """`-9` -> `killed by signal SIGKILL`; `3` -> `exited with code 3`. A sandboxed plugin's
    death by a signal reaches the host as bubblewrap's exit code 128 + the signal."""
    if sandboxed and 128 < returncode < 128 + 65:
        returncode = 128 - returncode
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class PluginProcess:
    """A started plugin executable and the threads that watch it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        extra_env: Mapping[str, str] | None = None,
        offered_versions: Sequence[int] = (APP_PROTOCOL_VERSION,),
        handshake_timeout: float = 10.0,
        pass_fds: Sequence[int] = (),
        on_exit: Callable[[PluginProcess], None] | None = None,
        capabilities: Capabilities = _MINIMUM,
        data_dir: str = "",
        sandbox: SandboxSettings = _REQUIRED,
        own_uid: int | None = None,
        shown_as: str = "",
    ) -> None:
        """`data_dir` is the plugin's own read-write folder ("": a fresh temporary one);
        `own_uid` the uid it runs under when the host is root (default: from its name);
        `shown_as` names its executable where its output names a sealed copy."""
        self.name = name
        self.capabilities = capabilities
        self.data_dir = data_dir
        self._temporary_data = not data_dir
        self._sandboxed: Sandboxed | None = None
        self._claimed = ""  # the host-only folder the plugin's socket was moved into
        self.sandbox = sandbox
        self.enforced: Enforced | None = None
        self.own_uid, self.shown_as = own_uid, shown_as
        self.uid: int | None = None  # the plugin's own uid, when the host is root
        self.argv = list(argv)
        self.extra_env = dict(extra_env or {})
        self.offered_versions = tuple(offered_versions)
        self.handshake_timeout = handshake_timeout
        self.pass_fds = tuple(pass_fds)
        self.on_exit = on_exit
        self.socket_dir: str | None = None
        self.handshake: Handshake | None = None
        #: the pid serving the plugin's socket (below the sandbox's own processes)
        self.server_pid: int | None = None
        self.returncode: int | None = None
        self.exited = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._first_line: list[bytes] = []
        self._first_line_ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._exit_expected = False
        self._log = logging.getLogger(f"pm_plugins.plugin.{name}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def expect_exit(self) -> None:
        """The host is about to ask the plugin to exit: an exit from now on is not a crash."""
        self._exit_expected = True

    @property
    def exit_expected(self) -> bool:
        return self._exit_expected or self._stopping

    def stderr_tail(self) -> list[str]:
        """The plugin's last stderr lines (oldest first)."""
        return list(self._stderr_tail)

    def exit_description(self) -> str | None:
        if self.returncode is None:
            return None
        return describe_exit(self.returncode, bool(self.enforced and self.enforced.confined))

    # -- start ----------------------------------------------------------------------------

    def start(self) -> Handshake:
        """Start the executable and wait for its handshake.

        Raises:
            HandshakeError: no valid handshake line in time (the process is stopped).
            PluginProcessError: the executable could not be started.
        """
        if self._proc is not None:
            raise RuntimeError(f"plugin {self.name} was already started")
        sandboxed: Sandboxed | None = None
        try:
            sandboxed, env = self._prepare()
            argv, fds = sandboxed.argv, (*self.pass_fds, *sandboxed.pass_fds)
            self._proc = spawn(
                lambda: subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    cwd=self.data_dir,
                    start_new_session=True,
                    pass_fds=fds,
                    close_fds=True,
                )
            )
        except PluginProcessError:
            self._cleanup_dir()
            raise
        except OSError as err:
            self._cleanup_dir()
            raise PluginProcessError(f"plugin {self.name} could not be started: {err}") from err
        finally:
            if sandboxed is not None:
                sandboxed.close()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._spawn(self._drain_stderr, self._proc.stderr)
        self._spawn(self._drain_stdout, self._proc.stdout)
        self._spawn(self._watch_exit)
        try:
            self.handshake = self._await_handshake()
            claimed = self._claim_socket(self.handshake.address)
            self.handshake = dataclasses.replace(self.handshake, address=claimed)
        except HandshakeError:
            self.stop(grace=0.5)
            raise
        return self.handshake

    def _prepare(self) -> tuple[Sandboxed, dict[str, str]]:
        """Make the socket and data folders (the plugin's own when it has a uid of its own)
        and the sandboxed command line."""
        self.socket_dir = tempfile.mkdtemp(prefix=f"pm-plugins-{self.name[:20]}-")
        if not self.data_dir:
            self.data_dir = tempfile.mkdtemp(prefix=f"pm-plugins-data-{self.name[:20]}-")
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        sandboxed = sandbox_command(
            self.name,
            self.argv,
            self.capabilities,
            socket_dir=self.socket_dir,
            data_dir=self.data_dir,
            settings=self.sandbox,
            uid=self.own_uid,
        )
        self.enforced, self.uid, self._sandboxed = sandboxed.enforced, sandboxed.uid, sandboxed
        if self.uid is not None:
            os.chown(self.socket_dir, self.uid, self.uid)
            give_tree(self.data_dir, self.uid)
        env = minimal_environment(self.socket_dir, self.offered_versions, self.data_dir)
        return sandboxed, env | self.extra_env

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(
            target=target, args=args, name=f"pm-plugins-{self.name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _await_handshake(self) -> Handshake:
        got = self._first_line_ready.wait(self.handshake_timeout)
        raw = self._first_line[0] if self._first_line else b""
        if not got:
            raise self._handshake_error(
                f"did not print its handshake within {self.handshake_timeout:g} s"
            )
        if not raw:
            self.exited.wait(1.0)
            state = self.exit_description() or "closed its stdout"
            raise self._handshake_error(f"{state} before printing its handshake")
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_HANDSHAKE_LINE:
                raise self._handshake_error(
                    f"printed more than {MAX_HANDSHAKE_LINE} bytes without a newline"
                )
            self.exited.wait(1.0)
        line = raw.decode("utf-8", errors="replace")
        try:
            return parse_handshake(line, self.offered_versions)
        except HandshakeError as err:
            raise self._handshake_error(f"printed a handshake this host refuses ({err})") from err

    def _handshake_error(self, what: str) -> HandshakeError:
        # let the stderr reader catch up so the message carries the plugin's last words
        for thread in self._threads[:1]:
            thread.join(0.3 if self.exited.is_set() else 0.05)
        tail = self.stderr_tail()[-5:]
        said = (
            "; last stderr lines: " + " | ".join(tail) if tail else "; it wrote nothing on stderr"
        )
        return HandshakeError(f"plugin {self.name} failed to start: it {what}{said}")

    def _claim_socket(self, path: str) -> str:
        """Move the announced socket out of the plugin's reach, then check that the plugin we
        started (or one of its children) serves it; returns where it is now. The host's later
        connections then never follow a name the plugin could point elsewhere."""
        assert self._proc is not None and self.socket_dir is not None
        shown = loggable(path, 256)  # the plugin's words: escaped, bounded
        folder, entry = os.path.split(path)
        if not inside(folder, self.socket_dir) or os.path.normpath(path) != path:
            raise self._handshake_error(f"announced socket {shown}, outside its socket folder")
        self._claimed = tempfile.mkdtemp(prefix="pm-plugins-claimed-")
        claimed = os.path.join(self._claimed, "plugin.sock")
        try:
            parent = open_path(folder)  # no symlink on the way: the move stays in its folder
            try:  # whatever the name holds now moves; then it cannot change
                os.rename(entry, claimed, src_dir_fd=parent)
            finally:
                os.close(parent)
            if not stat.S_ISSOCK(os.lstat(claimed).st_mode):
                raise OSError(errno.ENOTSOCK, "not a socket")
            peer = socket_peer_pid(claimed)
        except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
            raise self._handshake_error(f"announced socket {shown}, which refuses ({err})") from err
        if self.owns(peer):
            self.server_pid = peer
            return claimed
        raise self._handshake_error(
            f"announced socket {shown}, which is served by pid {peer}, not by the plugin "
            f"(pid {self._proc.pid}) or its children"
        )

    def owns(self, pid: int) -> bool:
        """Whether `pid` is this plugin or one of its descendants (see host.peers)."""
        if self._proc is None or self.returncode is not None:
            return False
        return descends_from(pid, {self._proc.pid})

    # -- readers and watcher ----------------------------------------------------------------

    def _drain_stdout(self, stream: IO[bytes]) -> None:
        try:
            first = stream.readline(MAX_HANDSHAKE_LINE + 1)
            self._first_line.append(first)
            self._first_line_ready.set()
            for raw in iter(lambda: stream.readline(MAX_LOG_LINE), b""):
                self._log.debug("[%s] stdout: %s", self.name, loggable(_text(raw)))
        except (OSError, ValueError):
            pass
        finally:
            self._first_line_ready.set()

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(lambda: stream.readline(MAX_LOG_LINE), b""):
                line = _SEALED_PATH.sub(lambda m: self.shown_as or m[0], _text(raw))
                if not line:
                    continue
                level, message = _parse_log_line(line)
                message = loggable(message)
                self._stderr_tail.append(message)
                self._log.log(level, "[%s] %s", self.name, message)
        except (OSError, ValueError):
            pass

    def _watch_exit(self) -> None:
        assert self._proc is not None
        self.returncode = self._proc.wait()
        self.exited.set()
        if not self.exit_expected:
            log.warning("plugin %s %s", self.name, self.exit_description())
            if self.on_exit is not None:
                self.on_exit(self)

    # -- stop -----------------------------------------------------------------------------

    def stop(self, grace: float = 2.0) -> None:
        """End the process group: SIGTERM, then SIGKILL after `grace`; remove the socket dir."""
        with self._lock:
            if self._stopping:
                self.exited.wait(grace + 2.0)
                return
            self._stopping = self._exit_expected = True
        try:
            if self._proc is not None:
                self._signal_group(signal.SIGTERM)
                if not self.exited.wait(grace):
                    self._signal_group(signal.SIGKILL)
                    self.exited.wait(5.0)
                self._signal_group(signal.SIGKILL)  # children left behind by the leader
                for thread in self._threads:
                    if thread is not threading.current_thread():  # stop() from on_exit
                        thread.join(1.0)
        finally:
            self._cleanup_dir()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _cleanup_dir(self) -> None:
        if self._claimed:
            shutil.rmtree(self._claimed, ignore_errors=True)
        if self._sandboxed is not None and self._sandboxed.cgroup is not None:
            self._sandboxed.cgroup.remove()
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self._temporary_data and self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _parse_log_line(line: str) -> tuple[int, str]:
    """The level and text of one stderr line, read as go-plugin's client reads it.

    An hclog JSON line keeps its level, message and fields; a line that starts with
    `[TRACE]`, `[DEBUG]`, `[INFO]`, `[WARN]` or `[ERROR]` gets that level; others are debug.
    """
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return logging.DEBUG, line
        if isinstance(entry, dict) and isinstance(entry.get("@message"), str):
            level = _LEVELS.get(str(entry.get("@level", "debug")), logging.DEBUG)
            fields = " ".join(f"{k}={v}" for k, v in entry.items() if not k.startswith("@"))
            return level, f"{entry['@message']} {fields}".rstrip()
    match = _LEVEL_PREFIX.match(line)
    if match:
        return _LEVELS[match.group(1).lower()], line[match.end() :]
    return logging.DEBUG, line
