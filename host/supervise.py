"""When a crashed plugin is started again, and when the host gives up on it.

A plugin process that dies on its own is usually worth one more try (a bug hit by one
connection, an OOM kill), but one that dies again and again must not be restarted in a tight
loop: each start costs a process, a handshake and a Configure, and a plugin failing at boot
would otherwise burn a core forever. So restarts back off exponentially, and after
`max_crashes` crashes within `window` seconds the plugin is FAILED until someone starts it
by hand. This module is only the policy and the bookkeeping (no threads, no processes), so it
can be tested without either; `host.runtime.PluginHost` applies it.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """How a host restarts a plugin whose process exited without being asked to.

    The restart after the n-th crash within `window` seconds waits
    `initial_backoff * factor ** (n - 1)` seconds, at most `max_backoff`. The `max_crashes`-th
    crash within `window` is not followed by a restart: the plugin is FAILED.
    """

    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    factor: float = 2.0
    max_crashes: int = 5
    window: float = 60.0

    def __post_init__(self) -> None:
        # A bad policy is a bug in the caller: refuse it when it is made, not at the first crash.
        for name in ("initial_backoff", "max_backoff", "factor", "window"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"RestartPolicy.{name} must be a finite number >= 0, not {value!r}"
                )
        if self.max_backoff < self.initial_backoff:
            raise ValueError("RestartPolicy.max_backoff must be >= initial_backoff")
        if self.factor < 1:
            raise ValueError("RestartPolicy.factor must be >= 1 (backoff never shrinks)")
        if self.window <= 0:
            raise ValueError("RestartPolicy.window must be > 0")
        if isinstance(self.max_crashes, bool) or not isinstance(self.max_crashes, int):
            raise ValueError(f"RestartPolicy.max_crashes must be an int, not {self.max_crashes!r}")
        if self.max_crashes < 1:
            raise ValueError("RestartPolicy.max_crashes must be >= 1")

    def backoff(self, crashes: int) -> float:
        """Seconds to wait before the restart that follows the `crashes`-th recent crash."""
        exponent = max(crashes - 1, 0)
        try:
            delay = self.initial_backoff * self.factor**exponent
        except OverflowError:  # a long crash history with a large factor: the cap applies
            delay = self.max_backoff
        return min(delay, self.max_backoff)

    def delay_after(self, crashes: int) -> float | None:
        """The wait before restarting after `crashes` recent crashes, or None: give up."""
        if crashes >= self.max_crashes:
            return None
        return self.backoff(crashes)


#: What a host does unless told otherwise: a few quick retries, then FAILED for good.
DEFAULT_RESTART_POLICY = RestartPolicy()


class CrashHistory:
    """The times (monotonic seconds) of one plugin's recent crashes.

    Only crashes within the policy's window count: a plugin that crashes once a day is
    restarted quickly every time, one that crashes every second soon gives up.
    """

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        # more than max_crashes are never needed: that many already means giving up
        self._times: collections.deque[float] = collections.deque(maxlen=policy.max_crashes)

    def record(self, now: float) -> int:
        """Note a crash at `now`; returns how many crashes fall within the window, this one too."""
        self._times.append(now)
        return self.recent(now)

    def recent(self, now: float) -> int:
        """How many recorded crashes are at most `window` seconds older than `now`."""
        while self._times and now - self._times[0] > self.policy.window:
            self._times.popleft()
        return len(self._times)

    def clear(self) -> None:
        """Forget every crash: a plugin started by hand gets a fresh allowance."""
        self._times.clear()
