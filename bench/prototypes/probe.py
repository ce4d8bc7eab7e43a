"""Where the time of a decision goes, and what prototypes of fixes gain.

`python -m bench.prototypes.probe [cpu] [servers] [reporters]` (all three by default):

- cpu: wall time and CPU time per call of the host and of the plugin process (from
  /proc/<pid>/stat) for the floor, the unary call, and the stream with one in flight.
- servers: the unary and one-in-flight stream latency against pm_plugin's sync
  thread-pool server and a grpc.aio server (bench/prototypes/decider_server.py), each
  with the host's channel options and with retries off; the stream read by the calling
  thread (`DirectStream`); decisions over a raw socket without gRPC (raw_decider.py);
  interleaved rounds, free and with every process on one CPU (`_one_cpu`). Run it again
  with GRPC_EXPERIMENTS=-event_engine_client,-event_engine_listener in the environment
  (the server children inherit it) to see gRPC without its EventEngine threads.
- reporters: decision latency while reporting to 2 fast + 1 slow reporter as
  `ReporterFanout` does (a unary call per report) against prototypes of a batching fan-out.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc

from bench.common import latency, pin, use_this_python
from bench.runtime import (
    ACCEPT,
    ONE_CPU,
    Echo,
    client_of,
    connection,
    interleaved,
    spec,
    start_host,
    stop_hosts,
)
from loader.client import CHANNEL_OPTIONS, PluginClient, StreamedDecider
from loader.dispatch import REPORT_QUEUE, Counters, ReporterFanout
from loader.runtime import PluginHost
from pm_plugin.wire.pmplugin.v1 import extensions_pb2, extensions_pb2_grpc
from pm_plugin.wire.portmaster import decider_pb2, decider_pb2_grpc, network_pb2

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def per_call(fn: Callable[[], object], n: int, pid: int | None) -> dict[str, float]:
    for _ in range(200):
        fn()
    wall, cpu = time.perf_counter(), time.process_time()
    other = process_cpu(pid) if pid else 0.0
    for _ in range(n):
        fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    other = (process_cpu(pid) - other) if pid else 0.0
    return {
        "wall_us": round(wall / n * 1e6, 1),
        "host_cpu_us": round(cpu / n * 1e6, 1),
        "plugin_cpu_us": round(other / n * 1e6, 1),
    }


def probe_cpu() -> None:
    starts: list[int] = []
    hosts: list[PluginHost] = []
    echo = Echo()
    try:
        solo = start_host([spec("solo", "no-extensions")], starts, hosts)
        streamed = start_host([spec("streamed")], starts, hosts)
        conn = connection("plain.bench.")
        client = client_of(solo, "solo")
        stub = decider_pb2_grpc.DeciderServiceStub(client.channel)
        request = decider_pb2.DecideOnConnectionRequest(connection=conn)
        stream = client_of(streamed, "streamed").streamed_decider()

        def one() -> object:
            (future,) = stream.submit(conn)
            return future.result(2.0)

        cases = {
            "floor": (echo.ping, 20000, echo.proc.pid),
            "unary stub": (lambda: stub.DecideOnConnection(request, timeout=2.0), 3000, None),
            "host.decide unary": (lambda: solo.decide(conn), 3000, None),
            "stream 1 in flight": (one, 3000, None),
        }
        pids = {"unary stub": solo.get("solo").pid, "host.decide unary": solo.get("solo").pid}
        pids["stream 1 in flight"] = streamed.get("streamed").pid
        for name, (fn, n, pid) in cases.items():
            print(f"cpu  {name:20s} {per_call(fn, n, pid or pids.get(name))}", flush=True)
    finally:
        echo.close()
        stop_hosts(hosts)


class DirectStream:
    """Prototype: the decision stream read by the calling thread, no reader thread.

    One decision in flight at a time (a lock): the caller puts the batch on the request
    queue and takes the next reply itself, saving the reader-thread -> Future -> caller
    hand-off of `StreamedDecider`.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.SimpleQueue[extensions_pb2.DecisionBatch | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        stub = extensions_pb2_grpc.StreamDeciderServiceStub(channel)
        self._call = stub.Decide(iter(self._requests.get, None))

    def decide(self, conn: network_pb2.Connection) -> extensions_pb2.Decision:
        with self._lock:
            batch = extensions_pb2.DecisionBatch()
            batch.requests.add(id=next(self._ids), connection=conn)
            self._requests.put(batch)
            reply: extensions_pb2.VerdictBatch = next(self._call)
            decision: extensions_pb2.Decision = reply.decisions[0]
            return decision

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()


class RawDecider:
    """Prototype host end of `raw_decider.py`: one decision per length-prefixed message."""

    HEADER = struct.Struct("!I")

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "raw_decider.py"), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        self._ids = itertools.count(1)

    def decide(self, conn: network_pb2.Connection) -> extensions_pb2.Decision:
        batch = extensions_pb2.DecisionBatch()
        batch.requests.add(id=next(self._ids), connection=conn)
        body = batch.SerializeToString()
        self.sock.sendall(self.HEADER.pack(len(body)) + body)
        (size,) = self.HEADER.unpack(self._read(self.HEADER.size))
        reply = extensions_pb2.VerdictBatch.FromString(self._read(size))
        decision: extensions_pb2.Decision = reply.decisions[0]
        return decision

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = self.sock.recv(size - len(data))
            if not more:
                raise RuntimeError("the raw decider went away")
            data += more
        return data

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(5)


class Server:
    def __init__(self, kind: str, directory: str) -> None:
        self.path = os.path.join(directory, f"{kind}.sock")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "decider_server.py"), kind, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{kind} server did not start")

    def channel(self, options: list[tuple[str, object]]) -> grpc.Channel:
        channel = grpc.insecure_channel(f"unix:{self.path}", options=options)
        grpc.channel_ready_future(channel).result(timeout=5)
        return channel

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def probe_servers() -> None:
    request = decider_pb2.DecideOnConnectionRequest(connection=connection("plain.bench."))
    conn = connection("plain.bench.")
    no_retries = [*CHANNEL_OPTIONS, ("grpc.enable_retries", 0)]
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as directory:
        servers = {kind: Server(kind, directory) for kind in ("sync", "aio")}
        streams: list[StreamedDecider] = []
        directs: list[DirectStream] = []
        echo = Echo()
        raw = RawDecider()
        try:
            if raw.decide(conn).verdict != ACCEPT:
                raise RuntimeError("the raw decider did not accept")
            cases: dict[str, tuple[Callable[[], object], int]] = {
                "floor": (echo.ping, 3000),
                "raw socket, protobuf, no gRPC": (partial(raw.decide, conn), 1000),
            }
            for kind, server in servers.items():
                for label, options in (("default", CHANNEL_OPTIONS), ("no-retries", no_retries)):
                    call = decider_pb2_grpc.DeciderServiceStub(
                        server.channel(list(options))
                    ).DecideOnConnection
                    cases[f"unary {kind} {label}"] = (
                        lambda call=call: call(request, timeout=2.0),  # type: ignore[misc]
                        500,
                    )
                stream = StreamedDecider(server.channel(list(CHANNEL_OPTIONS)), kind)
                streams.append(stream)

                def one(stream: StreamedDecider = stream) -> object:
                    (future,) = stream.submit(conn)
                    return future.result(2.0)

                cases[f"stream-1 {kind}"] = (one, 500)
                direct = DirectStream(server.channel(list(CHANNEL_OPTIONS)))
                directs.append(direct)
                cases[f"stream-1 {kind} caller-reads"] = (partial(direct.decide, conn), 500)
            pids = [os.getpid(), echo.proc.pid, raw.proc.pid]
            pids += [server.proc.pid for server in servers.values()]
            allowed = os.sched_getaffinity(0)
            single = {max(allowed)}
            try:
                samples = interleaved(
                    cases,
                    4,
                    {"": lambda: pin(pids, allowed), ONE_CPU: lambda: pin(pids, single)},
                )
            finally:
                pin(pids, allowed)
            for name, s in samples.items():
                stats = latency(s)
                print(f"srv  {name:40s} p50 {stats['p50_us']:8.1f} us  p99 {stats['p99_us']:8.1f}")
        finally:
            for stream in streams:
                stream.close()
            for direct in directs:
                direct.close()
            echo.close()
            raw.close()
            for server in servers.values():
                server.close()


Send = Callable[[list[network_pb2.Connection]], None]


def over_stream(stream: StreamedDecider) -> Send:
    """A batch as ONE stream message: stands in for a streamed reporter extension (a
    `ReportBatch` stream); the plugin's StreamDeciderService carries it, its reply acks."""

    def send(batch: list[network_pb2.Connection]) -> None:
        stream.submit(*batch)[-1].result(5.0)

    return send


def one_by_one(client: PluginClient) -> Send:
    """A batch as one unary ReportConnection per report (all a PR-only plugin offers)."""

    def send(batch: list[network_pb2.Connection]) -> None:
        for conn in batch:
            client.report(conn, 5.0)

    return send


class BatchingReporter:
    """Prototype fan-out worker: wakes up, lingers, takes everything queued, sends it."""

    def __init__(self, send: Send, linger: float, most: int = 512) -> None:
        self.send, self.linger, self.most = send, linger, most
        self.queue: queue.Queue[network_pb2.Connection | None] = queue.Queue(REPORT_QUEUE)
        self.taken = self.dropped = self.batches = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            if self.linger:
                time.sleep(self.linger)  # let reports gather: one wake-up per batch
            while len(batch) < self.most:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self.send(batch)
            self.taken += len(batch)
            self.batches += 1

    def report(self, conn: network_pb2.Connection) -> None:
        try:
            self.queue.put_nowait(conn)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=1.0)
        self.thread.join(2.0)


LINGER = 0.02


def stream_of(host: PluginHost, name: str) -> StreamedDecider:
    return client_of(host, name).streamed_decider()


def probe_reporters(rounds: int = 12, per_round: int = 500) -> None:
    """Decision p50: no reporting, ReporterFanout (unary per report), batching prototype."""
    starts: list[int] = []
    hosts: list[PluginHost] = []
    fanouts: list[ReporterFanout] = []
    batching: list[BatchingReporter] = []
    lingering: list[BatchingReporter] = []
    unary_lingering: list[BatchingReporter] = []
    try:
        solo = start_host([spec("solo", "no-extensions")], starts, hosts)
        sinks = start_host(
            [
                spec("r1", types=("reporter",)),
                spec("r2", types=("reporter",)),
                spec("r3-slow", "slow-reporter", types=("reporter",)),
            ],
            starts,
            hosts,
        )
        counters = Counters()
        current = ReporterFanout([sinks.get(n) for n in ("r1", "r2", "r3-slow")], counters)
        slow_only = ReporterFanout([sinks.get("r3-slow")], Counters())
        fanouts += [current, slow_only]
        fast = ("r1", "r2")
        batching = [BatchingReporter(over_stream(stream_of(sinks, n)), 0.0) for n in fast]
        lingering = [BatchingReporter(over_stream(stream_of(sinks, n)), LINGER) for n in fast]
        unary_lingering = [BatchingReporter(one_by_one(client_of(sinks, n)), LINGER) for n in fast]
        conn = connection("report.bench.")
        reported = connection("report.bench.")
        reported.verdict = ACCEPT
        sent = {"current": 0, "batching": 0, "lingering": 0, "unary-lingering": 0}

        def fanout(workers: list[BatchingReporter]) -> Callable[[network_pb2.Connection], None]:
            def report(c: network_pb2.Connection) -> None:
                for b in workers:
                    b.report(c)
                slow_only.report(c)

            return report

        reporters: dict[str, Callable[[network_pb2.Connection], None] | None] = {
            "none": None,
            "current": current.report,
            "batching": fanout(batching),
            "lingering": fanout(lingering),
            "unary-lingering": fanout(unary_lingering),
        }

        def drained() -> None:
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                fast = [counters.of(n) for n in ("r1", "r2")]
                if (
                    all(c.calls + c.dropped >= sent["current"] for c in fast)
                    and all(b.taken + b.dropped >= sent["batching"] for b in batching)
                    and all(b.taken + b.dropped >= sent["lingering"] for b in lingering)
                    and all(b.taken + b.dropped >= sent["unary-lingering"] for b in unary_lingering)
                ):
                    break
                time.sleep(0.005)
            time.sleep(0.02)

        samples: dict[str, list[int]] = {name: [] for name in reporters}
        order = list(reporters)
        for r in range(rounds):
            for name in order if r % 2 == 0 else reversed(order):
                report = reporters[name]
                clock = time.perf_counter_ns
                for i in range(per_round + 50):
                    began = clock()
                    solo.decide(conn)
                    took = clock() - began
                    if report is not None:
                        report(reported)
                        sent[name] += 1
                    if i >= 50:
                        samples[name].append(took)
                drained()
        base = latency(samples["none"])["p50_us"]
        for name, s in samples.items():
            stats = latency(s)
            added = (stats["p50_us"] / base - 1) * 100
            print(
                f"rep  {name:16s} decision p50 {stats['p50_us']:7.1f} us "
                f"p99 {stats['p99_us']:8.1f}  added {added:+6.1f}%",
                flush=True,
            )
        for name, workers in (
            ("batching", batching),
            ("lingering", lingering),
            ("unary-lingering", unary_lingering),
        ):
            print(
                f"rep  {name}: sent {sent[name]} to each, taken "
                f"{[b.taken for b in workers]} in {[b.batches for b in workers]} batches",
                flush=True,
            )
    finally:
        for b in batching + lingering + unary_lingering:
            b.close()
        for f in fanouts:
            threading.Thread(target=f.close, daemon=True).start()
        stop_hosts(hosts)


def main() -> None:
    use_this_python()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pm_plugins.dispatch").setLevel(logging.ERROR)
    print("GRPC_EXPERIMENTS=" + os.environ.get("GRPC_EXPERIMENTS", ""), flush=True)
    parts = set(sys.argv[1:]) or {"cpu", "servers", "reporters"}
    if "cpu" in parts:
        probe_cpu()
    if "servers" in parts:
        probe_servers()
    if "reporters" in parts:
        probe_reporters()


if __name__ == "__main__":
    main()
