"""How requests are paced: the retry budget and its backoff, the client-side request
ceiling (held for everyone after a 429), a run's shared stop signal, and the wait a 429
announces. No I/O here: ``HttpClient`` (``magsync.http``) applies them."""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from magsync.errors import ConfigError, RetriableError


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request may keep retrying, and how the waits grow."""

    budget: float = 120.0      # total seconds a request may spend retrying
    base_delay: float = 0.5    # first backoff; doubles each attempt, full jitter, capped
    max_delay: float = 20.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        return (rng or random).uniform(0, cap)


DEFAULT_RETRY = RetryPolicy()


RETRY_BUDGET_ENV = "MAGSYNC_RETRY_BUDGET"


def apply_retry_budget_override(retry: RetryPolicy) -> RetryPolicy:
    """``retry`` with its budget replaced by ``$MAGSYNC_RETRY_BUDGET`` (seconds) if set.

    Lets tests and impatient admins shorten the ~2 minute retry budget of every command.
    """
    raw = os.environ.get(RETRY_BUDGET_ENV, "").strip()
    if not raw:
        return retry
    try:
        budget = float(raw)
    except ValueError:
        raise ConfigError(f"${RETRY_BUDGET_ENV} must be a number of seconds, not {raw!r}"
                          ) from None
    if budget < 0:
        raise ConfigError(f"${RETRY_BUDGET_ENV} must not be negative, not {raw!r}")
    return replace(retry, budget=budget)


class RateLimiter:
    """A smooth limiter shared by every thread of a client.

    Each ``acquire`` reserves the next free slot, one every ``60 / per_minute`` seconds,
    and sleeps outside the lock until it comes, so threads queue fairly and no burst
    ever exceeds the configured rate (a bucket of depth one). A ``hold`` (the server said
    429) that arrives while a caller sleeps towards its slot is seen when it wakes: it
    then takes a new slot after the hold instead of sending.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: float | None = None
        self._held_until: float | None = None

    def acquire(self) -> None:
        """Block until this caller may send one request."""
        with self._lock:
            now = self._clock()
            slot = self._reserve(now)
        while True:
            if slot > now:
                self._sleep(slot - now)
            with self._lock:
                now = self._clock()
                if self._held_until is None or now >= self._held_until:
                    return
                # A 429 arrived while this caller waited for its slot: the slot it
                # reserved before is void, the next one comes after the hold.
                slot = self._reserve(now)

    def _reserve(self, now: float) -> float:
        slot = now if self._next_slot is None else max(now, self._next_slot)
        self._next_slot = slot + self.interval
        return slot

    def hold(self, seconds: float) -> None:
        """No request from any thread for ``seconds`` (the server said 429: wait until its
        reset), not even one whose slot was reserved before. Requests already sent are
        not recalled."""
        with self._lock:
            until = self._clock() + seconds
            self._next_slot = until if self._next_slot is None else max(self._next_slot, until)
            self._held_until = until if self._held_until is None else max(self._held_until,
                                                                            until)


class Abort:
    """One run's stop signal, shared by its clients. Once a request gave up after its
    retries the run is over: every other request abandons its retries (and no new one
    starts), raising the first failure again, so the run stops within one budget."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: RetriableError | None = None

    @property
    def tripped(self) -> bool:
        return self._event.is_set()

    def trip(self, reason: RetriableError) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the signal trips meanwhile."""
        self._event.wait(seconds)

    def error(self) -> RetriableError:
        """What an abandoned request raises: the failure that stopped the run."""
        r = self.reason
        assert r is not None
        return RetriableError(r.message, service=r.service, status=r.status, code=r.code,
                              hint=r.hint)


def parse_rate_limit_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait per ``X-RateLimit-Reset`` (unix time) or ``Retry-After``.

    ``headers`` should be case-insensitive (requests' are): Emarsys spells them
    inconsistently.
    """
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return float(reset) - now
        except ValueError:
            pass
    after = headers.get("Retry-After")
    if not after:
        return None
    try:
        return float(after)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(after)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - now if when.tzinfo else None
