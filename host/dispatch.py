"""Dispatch: decider chain, reporter fan-out, resolver chain, hook pipeline.

Each chain runs its members in the order the user configured, in one loop, as pluggy's
`_multicall` does; counting happens in one wrapper (`Counters.call`), not inside the loops.

- Deciders: the first answer that is not UNDECIDED/UNDETERMINABLE/FAILED wins. An error or a
  deadline counts as UNDECIDED, is counted and logged, and the chain goes on. An answer
  given with a cache TTL (our streamed extension) is that decider's own, cached per decider
  (host.decision_cache): the chain is replayed every time, each member giving its live cached
  answer or being asked, so a later decider's cached ACCEPT never skips an earlier decider
  that did not give a TTL itself. The key is every field of the connection a decider sees
  (binary, remote, ports, protocol, direction, ...), the TTL is capped by the host.
- Reporters: each gets a bounded queue and a worker thread; a full queue drops the report
  (counted), so a slow or dead reporter never slows a decision. The worker gathers what
  arrives within `REPORT_BATCH_WINDOW` after the first report and hands it over as one
  batch (one stream write for a plugin offering our streamed reporter): one wake-up per
  batch instead of per connection keeps reporting off the deciding thread's back.
- Resolvers: the first plugin that handles the question answers; not-handled falls through.
- Hooks: in order, each sees the previous output; an error aborts with the plugin's name.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

# Answer, DecisionCache and cache_key are re-exported: they belong to the decider chain's API
from host.decision_cache import Answer as Answer
from host.decision_cache import DecisionCache as DecisionCache
from host.decision_cache import cache_key as cache_key
from host.errors import HookAbortedError, PluginCallError
from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import network_pb2, resolver_pb2

log = logging.getLogger("pm_plugins.dispatch")

UNDECIDED = 0
#: The PR's host asks the next decider on these verdicts.
NOT_DECIDED = frozenset({0, 1, 7})  # UNDECIDED, UNDETERMINABLE, FAILED
#: Per-call deadline of a decider, as the PR's host gives each one.
DECIDER_TIMEOUT = 2.0
RESOLVER_TIMEOUT = 2.0
REPORTER_TIMEOUT = 5.0
HOOK_TIMEOUT = 5.0
#: Reports waiting per reporter before new ones are dropped.
REPORT_QUEUE = 1024
#: How long a reporter worker gathers reports before handing them over, and at most how many.
REPORT_BATCH_WINDOW = 0.02
REPORT_BATCH_MAX = 256

T = TypeVar("T")


@dataclass(frozen=True)
class ChainVerdict:
    """The chain's result, and who gave it (None: nobody decided)."""

    verdict: int
    reason: str
    plugin: str | None
    cached: bool = False  # the deciding answer was the plugin's cached one
    #: Deciders whose call failed in this decision (each counts as UNDECIDED): (name, why).
    failed: tuple[tuple[str, str], ...] = ()

    def failures(self) -> list[dict[str, str]]:
        """The failed deciders as plain JSON: [{"plugin": name, "error": sentence}]."""
        return [{"plugin": name, "error": why} for name, why in self.failed]


NOBODY = ChainVerdict(UNDECIDED, "", None)


class DeciderMember(Protocol):
    @property
    def name(self) -> str: ...

    def decide(self, connection: network_pb2.Connection, timeout: float) -> Answer: ...


class ReporterMember(Protocol):
    @property
    def name(self) -> str: ...

    def report(self, connections: list[network_pb2.Connection], timeout: float) -> None: ...


class ResolverMember(Protocol):
    @property
    def name(self) -> str: ...

    def resolve(
        self,
        question: resolver_pb2.DNSQuestion,
        connection: network_pb2.Connection | None,
        timeout: float,
    ) -> resolver_pb2.DNSResponse | None: ...


class HookMember(Protocol):
    @property
    def name(self) -> str: ...

    def implements(self, hook_point: str) -> bool: ...

    def run_hook(
        self,
        hook_point: str,
        entity: extensions_pb2.Entity,
        data: extensions_pb2.Entity,
        timeout: float,
    ) -> extensions_pb2.Entity: ...


@dataclass
class PluginCounters:
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    dropped: int = 0
    last_error: str = ""


@dataclass
class Counters:
    """Per-plugin call, error, timeout and drop counts: the one instrumentation seam."""

    by_plugin: dict[str, PluginCounters] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, name: str) -> PluginCounters:
        with self._lock:
            return self.by_plugin.setdefault(name, PluginCounters())

    def call(self, name: str, what: str, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)`, a call into plugin `name`, counting it; errors are re-raised."""
        counters = self.of(name)
        counters.calls += 1
        try:
            return fn(*args)
        except PluginCallError as err:
            counters.errors += 1
            if "timed out" in str(err):
                counters.timeouts += 1
            counters.last_error = str(err)
            log.warning("%s: %s", what, err)
            raise

    def drop(self, name: str) -> None:
        self.of(name).dropped += 1


class DeciderChain:
    """Deciders in configured order; the first decided verdict wins."""

    def __init__(
        self,
        members: Sequence[DeciderMember],
        counters: Counters,
        cache: DecisionCache | None = None,
        timeout: float = DECIDER_TIMEOUT,
    ) -> None:
        self.members = list(members)
        self.counters = counters
        self.cache = cache if cache is not None else DecisionCache()
        self.timeout = timeout

    def decide(self, connection: network_pb2.Connection) -> ChainVerdict:
        """Replay the chain: each member's live cached answer, else a call (see the module
        docstring). The key is built only when the cache holds something or gets an answer."""
        cache = self.cache
        key = cache_key(connection) if len(cache) else None
        stamp = cache.stamp()
        failed: tuple[tuple[str, str], ...] = ()  # the empty tuple: nothing made per decision
        for member in self.members:
            answer = cache.get(key, member.name) if key is not None else None
            cached = answer is not None
            if answer is None:
                try:
                    answer = self.counters.call(
                        member.name,
                        f"decider {member.name}",
                        member.decide,
                        connection,
                        self.timeout,
                    )
                except PluginCallError as err:
                    failed += ((member.name, str(err)),)
                    continue  # counts as UNDECIDED, never cached
                if answer.cache_ttl > 0:
                    key = key if key is not None else cache_key(connection)
                    cache.put(key, member.name, answer, stamp)
            if answer.verdict in NOT_DECIDED:
                continue
            return ChainVerdict(
                answer.verdict, answer.reason, member.name, cached=cached, failed=failed
            )
        return ChainVerdict(UNDECIDED, "", None, failed=failed) if failed else NOBODY


class _ReporterWorker:
    def __init__(self, member: ReporterMember, counters: Counters, timeout: float) -> None:
        self.member, self.counters, self.timeout = member, counters, timeout
        self.queue: queue.Queue[network_pb2.Connection | None] = queue.Queue(REPORT_QUEUE)
        self.thread = threading.Thread(
            target=self._run, name=f"pm-plugins-report-{member.name}", daemon=True
        )
        self.thread.start()

    def _gather(self) -> tuple[list[network_pb2.Connection], bool]:
        """The next batch, and whether the worker should stop after it."""
        first = self.queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + REPORT_BATCH_WINDOW
        while len(batch) < REPORT_BATCH_MAX:
            left = deadline - time.monotonic()
            try:
                item = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._gather()
            if not batch:
                continue
            with contextlib.suppress(PluginCallError):  # counted; reporting is best effort
                self.counters.call(
                    self.member.name,
                    f"reporter {self.member.name}",
                    self.member.report,
                    batch,
                    self.timeout,
                )


class ReporterFanout:
    """Each reporter behind its own bounded queue; `report` never blocks."""

    def __init__(
        self,
        members: Sequence[ReporterMember],
        counters: Counters,
        timeout: float = REPORTER_TIMEOUT,
    ) -> None:
        self.counters = counters
        self._workers = [_ReporterWorker(m, counters, timeout) for m in members]

    def report(self, connection: network_pb2.Connection) -> None:
        """Queue `connection` (with its final verdict set) for every reporter."""
        for worker in self._workers:
            try:
                worker.queue.put_nowait(connection)
            except queue.Full:
                self.counters.drop(worker.member.name)

    def close(self, timeout: float = 2.0) -> None:
        for worker in self._workers:
            while True:
                try:
                    worker.queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    try:
                        worker.queue.get_nowait()
                        self.counters.drop(worker.member.name)
                    except queue.Empty:
                        pass
        for worker in self._workers:
            worker.thread.join(timeout)


@dataclass(frozen=True)
class Resolution:
    response: resolver_pb2.DNSResponse
    plugin: str


class ResolverChain:
    """Resolvers in configured order; the first that handles the question answers."""

    def __init__(
        self,
        members: Sequence[ResolverMember],
        counters: Counters,
        timeout: float = RESOLVER_TIMEOUT,
    ) -> None:
        self.members = list(members)
        self.counters = counters
        self.timeout = timeout

    def resolve(
        self,
        question: resolver_pb2.DNSQuestion,
        connection: network_pb2.Connection | None = None,
    ) -> Resolution | None:
        for member in self.members:
            try:
                response = self.counters.call(
                    member.name,
                    f"resolver {member.name}",
                    member.resolve,
                    question,
                    connection,
                    self.timeout,
                )
            except PluginCallError:
                continue
            if response is not None:
                return Resolution(response, member.name)
        return None


class HookPipeline:
    """Hook plugins in configured order; each sees the previous one's entity."""

    def __init__(
        self, members: Sequence[HookMember], counters: Counters, timeout: float = HOOK_TIMEOUT
    ) -> None:
        self.members = list(members)
        self.counters = counters
        self.timeout = timeout

    def run(
        self,
        hook_point: str,
        entity: extensions_pb2.Entity,
        data: extensions_pb2.Entity | None = None,
    ) -> extensions_pb2.Entity:
        """Raises HookAbortedError naming the plugin when one refuses or fails."""
        data = data if data is not None else extensions_pb2.Entity()
        for member in self.members:
            if not member.implements(hook_point):
                continue
            try:
                entity = self.counters.call(
                    member.name,
                    f"hook {hook_point} of {member.name}",
                    member.run_hook,
                    hook_point,
                    entity,
                    data,
                    self.timeout,
                )
            except PluginCallError as err:
                raise HookAbortedError(
                    f"{hook_point} was aborted by plugin {member.name}: {err}"
                ) from err
        return entity
