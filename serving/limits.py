"""Request limits of one worker: a token bucket per API key and a cool-down per action.

Both are per worker process (each BentoML worker keeps its own buckets), so with N workers a
key can make up to N times `rate` requests per second in total. Time comes from
``time.monotonic`` unless a caller passes ``now`` (the unit tests do).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

MAX_BUCKETS = 10_000
"""Buckets kept at most; full buckets are dropped first (a full bucket equals a fresh one)."""


@dataclass
class TokenBucket:
    """`rate` tokens per second up to `burst`; each request takes one.

    Parameters
    ----------
    rate
        Refill in tokens per second; 0 turns the limit off (`take` always answers 0).
    burst
        Bucket size: requests a key may make at once after being idle.
    """

    rate: float
    burst: float
    _tokens: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, key: str, *, now: float | None = None) -> float:
        """Take a token for `key`: 0 when granted, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._tokens.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._tokens[key] = (tokens - 1.0, now)
                if len(self._tokens) > MAX_BUCKETS:
                    self._forget_full(now)
                return 0.0
            self._tokens[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        full = [k for k, (t, last) in self._tokens.items() if t + (now - last) * self.rate >= self.burst]
        for key in full:
            del self._tokens[key]


@dataclass
class Cooldown:
    """At most one action per `seconds`; `take` answers 0 when allowed, else the seconds left."""

    seconds: float
    _last: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, *, now: float | None = None) -> float:
        if self.seconds <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            left = self._last + self.seconds - now
            if left > 0:
                return left
            self._last = now
            return 0.0


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
