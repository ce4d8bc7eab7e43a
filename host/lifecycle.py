"""How `PluginHost` brings one plugin up, notices its crash and restarts it.

Why this exists: the launch (process, handshake, connect, Configure, describe) and the
supervision of a crashed plugin (reap, count the crash, wait out the backoff, start again, or
give up as FAILED) are one piece of machinery with its own rules about who overtakes whom (the
plugin's `_epoch`). `PluginLifecycle` holds it as a mixin of `host.runtime.PluginHost`, which
keeps the public lifecycle calls (start, stop), the state listener and the dispatch chains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from host.client import ConfigureArgs, PluginClient
from host.instance import PluginInstance, PluginSpec, PluginState, _Supervision
from host.process import PluginProcess
from host.sandbox import SandboxSettings
from host.services.backchannel import HostServices
from host.supervise import CrashHistory, RestartPolicy
from loader.errors import LoaderError
from pm_plugin.types import TYPE_NAMES

__all__ = ["PluginLifecycle"]

log = logging.getLogger("pm_plugins.runtime")


class _Superseded(Exception):
    """A stop() or manual start() came while a start was under way; its process is gone."""


class _LaunchFailed(LoaderError):
    """A start failed: `error` is what to raise to a caller, `crashed` whether the process died
    during Configure (rather than refusing the handshake or a call), `stderr` its last lines."""

    def __init__(self, error: LoaderError, *, crashed: bool, stderr: list[str]) -> None:
        super().__init__(str(error))
        self.error, self.crashed, self.stderr = error, crashed, stderr


class _Refused(_LaunchFailed):
    """`admit` refused the start (e.g. its signer was revoked since boot): no retry."""


#: `admit(name)`: why plugin `name` may not start now (None: it may); asked before every
#: start and restart.
Admit = Callable[[str], "str | None"]


class PluginLifecycle:
    """Launch, discard and supervise plugins; mixed into `host.runtime.PluginHost`."""

    # what the mixin uses of PluginHost, which sets these in its __init__
    services: HostServices
    base_directory: str
    _temporary_base: str
    _uids: dict[str, int]
    sandbox: SandboxSettings
    admit: Admit | None
    host_version: str
    handshake_timeout: float
    stop_grace: float
    restart: RestartPolicy | None
    _lock: threading.RLock

    if TYPE_CHECKING:

        def _set(self, instance: PluginInstance, state: PluginState, reason: str) -> None: ...

        def _rebuild(self) -> None: ...

    def data_dir_of(self, name: str) -> str:
        """A plugin's own data folder, its `base_directory` (never the state root)."""
        if not self.base_directory:
            self.base_directory = tempfile.mkdtemp(prefix="pm-plugins-data-")
            self._temporary_base = self.base_directory
        return os.path.join(self.base_directory, name)

    def _configure_args(self, spec: PluginSpec, data_dir: str) -> ConfigureArgs:
        return ConfigureArgs(
            name=spec.name,
            types=tuple(int(TYPE_NAMES[t]) for t in spec.types if t in TYPE_NAMES),
            privileged=spec.privileged,
            static_config=spec.static_config,
            disable_autostart=spec.disable_autostart,
            base_directory=data_dir,
            host_version=self.host_version,
        )

    def _launch(self, instance: PluginInstance, epoch: int, *, restart: bool) -> None:
        """Start the process, handshake, connect, Configure, describe; RUNNING on success.

        The spec is used as it is on every start, a restart's too: its argv and pass_fds
        stay valid for the host's lifetime (the boot loader keeps its sealed memfd open).

        Raises:
            _LaunchFailed: the start failed; the process is stopped, the state left to the
                caller (a manual start reports it, a restart counts it as a crash).
            _Superseded: stop() or another start() came meanwhile; the process is stopped.
        """
        refusal = self.admit(instance.name) if self.admit is not None else None
        if refusal:
            raise _Refused(LoaderError(refusal), crashed=False, stderr=[])
        process = self._new_process(instance)
        client = self._bring_up(instance, process, epoch)
        self._go_live(instance, process, client, epoch, restart=restart)

    def _new_process(self, instance: PluginInstance) -> PluginProcess:
        """The plugin's process, not yet started; its exit is reported to `_on_exit`."""
        spec = instance.spec
        return PluginProcess(
            spec.name,
            spec.argv,
            handshake_timeout=self.handshake_timeout,
            pass_fds=spec.pass_fds,
            on_exit=lambda p, i=instance: self._on_exit(i, p),  # type: ignore[misc]
            capabilities=spec.capabilities,
            data_dir=self.data_dir_of(spec.name),
            sandbox=self.sandbox,
            own_uid=self._uids.get(spec.name),
            shown_as=spec.shown_as,
        )

    def _bring_up(
        self, instance: PluginInstance, process: PluginProcess, epoch: int
    ) -> PluginClient:
        """Start the process, handshake, claim the plugin, connect, Configure, describe.

        Raises _LaunchFailed or _Superseded (as `_launch`) with the process stopped.
        """
        spec = instance.spec
        client: PluginClient | None = None
        with self._lock:
            instance._attempt = process
        try:
            process.start()
            client = PluginClient(process)
            with self._lock:
                if instance._attempt is process:
                    instance._attempt = None
                if instance._epoch != epoch:
                    raise _Superseded
                instance.process, instance.client = process, client
            client.connect()
            assert process.data_dir
            args = self._configure_args(spec, process.data_dir)
            client.configure(args, self.services.serve_backchannel)
            client.describe()
        except _Superseded:
            self._discard(instance, process, client)
            raise
        except Exception as err:
            with self._lock:
                if instance._attempt is process:
                    instance._attempt = None
            self._discard(instance, process, client)
            if self._overtaken(instance, epoch):
                raise _Superseded from err
            if not isinstance(err, LoaderError):  # a bug, not the plugin: keep the state sane
                log.exception("plugin %s: unexpected error while starting", spec.name)
                err = LoaderError(f"plugin {spec.name} failed to start: {err!r}")
            raise _LaunchFailed(err, crashed=False, stderr=process.stderr_tail()[-3:]) from err
        return client

    def _go_live(
        self,
        instance: PluginInstance,
        process: PluginProcess,
        client: PluginClient,
        epoch: int,
        *,
        restart: bool,
    ) -> None:
        """Mark the plugin RUNNING and rebuild the chains, unless it was overtaken or its
        process died during Configure; then the process is stopped and the start fails."""
        with self._lock:
            overtaken, died = instance._epoch != epoch, process.exited.is_set()
            if not overtaken and not died:
                self._set(instance, PluginState.RUNNING, "")
                instance.started_at = time.time()
                if restart:
                    instance.restarts += 1
                self._rebuild()
        if overtaken or died:
            self._discard(instance, process, client)
            if overtaken:
                raise _Superseded
            reason = self._exit_reason(process)  # died during Configure
            raise _LaunchFailed(
                LoaderError(reason), crashed=True, stderr=process.stderr_tail()[-3:]
            )

    def _discard(
        self,
        instance: PluginInstance,
        process: PluginProcess | None,
        client: PluginClient | None,
        graceful: bool = False,
    ) -> None:
        if process is not None:
            process.expect_exit()
        if client is not None:
            if graceful:
                client.close()
            else:
                client.close(timeout=0.2)
        if process is not None:
            process.stop(grace=self.stop_grace)
        with self._lock:
            if instance.client is client:  # not the client of a start that came after
                instance.client = None

    @staticmethod
    def _end_attempt(process: PluginProcess) -> None:
        """End a process that may still be waiting for its handshake, so the start under way
        fails at once instead of after `handshake_timeout`. Its own start() then reaps it and
        removes its directory. Before it was spawned there is nothing to signal: that start
        notices the stop when it claims the plugin, after its handshake."""
        process.expect_exit()
        pid = process.pid
        if pid is not None and not process.exited.is_set():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # the plugin leads its own process group

    def _supersede(self, instance: PluginInstance) -> int:
        """Overtake every start and restart under way or pending; the caller holds the lock."""
        instance._epoch += 1
        for supervision in instance._supervisors:
            supervision.cancelled.set()
        return instance._epoch

    def _overtaken(self, instance: PluginInstance, epoch: int) -> bool:
        with self._lock:
            return instance._epoch != epoch

    @staticmethod
    def _record_error(instance: PluginInstance, reason: str) -> None:
        """Keep the reason in the plugin's error list (the PR's `PluginErrorList`)."""
        instance.errors.append((time.time(), reason))
        del instance.errors[:-20]

    @staticmethod
    def _exit_reason(process: PluginProcess) -> str:
        tail = process.stderr_tail()[-3:]
        said = f"; last stderr lines: {' | '.join(tail)}" if tail else ""
        return f"plugin {process.name} {process.exit_description() or 'exited'}{said}"

    def _on_exit(self, instance: PluginInstance, process: PluginProcess) -> None:
        """The process exited without being asked to. Runs on its exit watcher thread, so it
        only takes the plugin out of the chains and hands the rest to a supervision thread."""
        crashed_at = time.monotonic()
        with self._lock:
            if instance.process is not process or instance.state is not PluginState.RUNNING:
                return
            # CRASHED at once for everyone who looks; announced once the supervisor has
            # reaped the process (its last stderr lines are in then) and made its plan
            instance.state, instance.reason = PluginState.CRASHED, self._exit_reason(process)
            self._rebuild()
            cancelled = threading.Event()
            thread = threading.Thread(
                target=self._supervise,
                args=(instance, process, instance.client, instance._epoch, crashed_at, cancelled),
                name=f"pm-plugins-supervise-{instance.name}",
                daemon=True,
            )
            instance._supervisors = [s for s in instance._supervisors if s.thread.is_alive()]
            instance._supervisors.append(_Supervision(thread, cancelled))
            thread.start()

    def _supervise(
        self,
        instance: PluginInstance,
        process: PluginProcess,
        client: PluginClient | None,
        epoch: int,
        crashed_at: float,
        cancelled: threading.Event,
    ) -> None:
        """One crash episode: reap the process, then wait and restart until the plugin runs,
        gives up, or a stop()/start() overtakes it (`epoch` changes, `cancelled` is set)."""
        self._discard(instance, process, client)
        reason, stderr = self._exit_reason(process), process.stderr_tail()[-3:]
        while True:
            with self._lock:
                if instance._epoch != epoch:
                    return
                delay = self._after_crash(instance, reason, stderr, crashed_at)
            if delay is None or cancelled.wait(delay):
                return
            with self._lock:
                if instance._epoch != epoch:
                    return
                self._set(instance, PluginState.STARTING, "")
            try:
                self._launch(instance, epoch, restart=True)
            except _Superseded:
                return
            except _Refused as refused:  # not a crash: the host no longer lets it run
                with self._lock:
                    if instance._epoch == epoch:
                        self._set(instance, PluginState.FAILED, str(refused))
                log.error("%s", refused)
                return
            except _LaunchFailed as failed:  # a restart that fails is one more crash
                reason, stderr, crashed_at = str(failed), failed.stderr, time.monotonic()
                continue
            log.info("plugin %s restarted (pid %s)", instance.name, instance.pid)
            return

    def _after_crash(
        self, instance: PluginInstance, reason: str, stderr: list[str], crashed_at: float
    ) -> float | None:
        """Count the crash and decide: seconds until the restart, or None (no restart).

        The caller holds the lock. The state becomes CRASHED with the plan in its reason, or
        FAILED when the policy gives up.
        """
        self._record_error(instance, reason)
        policy = self.restart
        if policy is None:
            self._set(instance, PluginState.CRASHED, reason)
            log.error("%s", reason)
            return None
        if instance._crashes is None or instance._crashes.policy is not policy:
            instance._crashes = CrashHistory(policy)
        crashes = instance._crashes.record(crashed_at)
        delay = policy.delay_after(crashes)
        if delay is None:
            said = (
                f"; last stderr lines: {' | '.join(stderr)}"
                if stderr
                else "; it wrote nothing on stderr"
            )
            self._set(
                instance,
                PluginState.FAILED,
                f"plugin {instance.name} crashed {crashes} times in {policy.window:g} s; "
                f"giving up{said}",
            )
            log.error("%s", instance.reason)
            return None
        self._set(
            instance,
            PluginState.CRASHED,
            f"{reason}; restarting in {delay:g} s "
            f"(crash {crashes} of {policy.max_crashes} in {policy.window:g} s)",
        )
        log.warning("%s", instance.reason)
        return delay
