"""The decision cache: each decider's own answers, reused for a bounded time.

Why it is built this way (issue 14, item 7): a cache shared by the whole chain and keyed on
(binary, domain) let one decider's ACCEPT for port 443 answer for port 25, which an earlier
decider blocks. So:

1. **Per decider.** An entry is one decider's own answer, stored under its name. The chain is
   replayed on every decision: each member in order gives its cached answer if it has a live
   one, else it is asked. A member that never gave a TTL is asked every time, so a later
   member's cached verdict can never skip it; a member that answered UNDECIDED *with* a TTL
   ("cacheable undecided") is skipped without a call, as it asked to be.
2. **The key is everything a decider sees** (`cache_key`): every field of
   `network_pb2.Connection` and its entity, coordinates and process, except `id` and
   `started`, which differ for every connection and would make every lookup miss. A decider
   whose verdict depends on those two must not give a TTL.
3. **The host caps the TTL** at `max_ttl` (`DEFAULT_CACHE_MAX_TTL`, `PluginHost(cache_max_ttl=)`,
   host.json `decisionCacheMaxTtl`), whatever a plugin asks for.
4. **Forgetting is O(1) and race-free.** `forget(plugin)` and `clear()` advance a counter; an
   entry carries the counter's value read *before* its decider was asked (`stamp()`), and is
   dead once its plugin was forgotten (or the cache cleared) after that. So an answer still in
   flight when its plugin restarts, changes config or asks to be forgotten is never reused.
   Dead and expired entries are dropped when the cache is full.

Who forgets what is the runtime's business (host.runtime): a plugin's entries when it starts,
stops, crashes or asks (`pmplugin.v1.DecisionCacheService`), the whole cache when any config
value changes (a privileged plugin may read any key, so the owner of the key is not enough).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from pm_plugin.wire.portmaster import network_pb2

__all__ = ["DEFAULT_CACHE_MAX_TTL", "Answer", "CacheKey", "DecisionCache", "cache_key"]

#: Longest a cached answer is reused, whatever TTL its decider gave (seconds). host.json's
#: `decisionCacheMaxTtl` overrides it (loader.home keeps the same default).
DEFAULT_CACHE_MAX_TTL = 300.0
#: Connections cached before the cache is pruned.
CACHE_ENTRIES = 65536

CacheKey = tuple[object, ...]


@dataclass(frozen=True)
class Answer:
    """A decider's answer: verdict number, reason, and how long it may be reused."""

    verdict: int
    reason: str = ""
    cache_ttl: float = 0.0


def cache_key(connection: network_pb2.Connection) -> CacheKey:
    """Every field of `connection` a decider can see, but `id` and `started`.

    Explicit on purpose: tests/test_decision_cache.py walks the proto's descriptors and fails
    when a field is neither here nor named as left out, so a new field can't slip past.
    """
    c, e, p = connection, connection.entity, connection.process
    at = e.coordinates
    return (
        # who asks
        p.binary_path,
        p.name,
        p.profile,
        p.command_line,
        p.process_id,
        p.source,
        # the remote end
        e.domain,
        e.ip,
        e.port,
        e.protocol,
        e.reverse_domain,
        tuple(e.cnames),
        e.scope,
        e.country,
        at.accuracy_radius,
        at.latitude,
        at.longitude,
        e.asn,
        e.as_owner,
        # the connection itself
        c.inbound,
        c.ip_protocol,
        c.local_ip,
        c.local_port,
        c.type,
        c.ip_version,
        c.external,
        c.tunneled,
        c.verdict,
    )


class DecisionCache:
    """Each decider's answers that came with a TTL, per `cache_key`, capped at `max_ttl`."""

    def __init__(
        self, max_entries: int = CACHE_ENTRIES, max_ttl: float = DEFAULT_CACHE_MAX_TTL
    ) -> None:
        if not (isinstance(max_ttl, int | float) and math.isfinite(max_ttl) and max_ttl > 0):
            raise ValueError(
                f"the decision cache's max_ttl must be a positive number, not {max_ttl!r}"
            )
        self.max_ttl = float(max_ttl)
        self._max = max_entries
        # key -> plugin -> (expires at, stamp, answer)
        self._entries: dict[CacheKey, dict[str, tuple[float, int, Answer]]] = {}
        self._lock = threading.Lock()
        self._clock = 0  # advanced by every forget() and clear()
        self._cleared = 0
        self._forgotten: dict[str, int] = {}

    def __len__(self) -> int:
        """Connections with at least one entry (live or not yet pruned)."""
        return len(self._entries)

    def stamp(self) -> int:
        """Read before asking deciders; `put` the answers with it (see the module docstring)."""
        return self._clock

    def get(self, key: CacheKey, plugin: str) -> Answer | None:
        """`plugin`'s live answer for `key`, None when it has none."""
        slot = self._entries.get(key)
        entry = slot.get(plugin) if slot is not None else None
        if entry is None:
            return None
        expires, stamp, answer = entry
        if expires < time.monotonic() or not self._alive(plugin, stamp):
            return None
        return answer

    def put(self, key: CacheKey, plugin: str, answer: Answer, stamp: int) -> None:
        """Keep `answer` of `plugin` for min(its TTL, max_ttl) seconds; no TTL, no entry."""
        ttl = min(answer.cache_ttl, self.max_ttl)
        if not ttl > 0:
            return
        with self._lock:
            if key not in self._entries and len(self._entries) >= self._max:
                self._prune()
            self._entries.setdefault(key, {})[plugin] = (time.monotonic() + ttl, stamp, answer)

    def forget(self, plugin: str) -> None:
        """Drop every answer of `plugin`, those still being computed too."""
        with self._lock:
            self._clock += 1
            self._forgotten[plugin] = self._clock

    def clear(self) -> None:
        """Drop every answer of every plugin, those still being computed too."""
        with self._lock:
            self._clock += 1
            self._cleared = self._clock
            self._entries = {}

    def _alive(self, plugin: str, stamp: int) -> bool:
        return stamp >= self._cleared and stamp >= self._forgotten.get(plugin, 0)

    def _prune(self) -> None:
        """Drop expired and forgotten entries; if that frees nothing, drop them all. The
        caller holds the lock."""
        now = time.monotonic()
        kept: dict[CacheKey, dict[str, tuple[float, int, Answer]]] = {}
        for key, slot in self._entries.items():
            live = {p: e for p, e in slot.items() if e[0] >= now and self._alive(p, e[1])}
            if live:
                kept[key] = live
        self._entries = kept if len(kept) < self._max else {}
