"""The one session factory: timeouts, retries, rate limiting and redaction.

Both remote clients (Magento, Emarsys) talk through ``HttpClient``. It retries what is
worth retrying (429, 408, 423, 5xx gateways, connection errors, timeouts) within a time
budget, honours ``X-RateLimit-Reset``/``Retry-After``, takes a rate-limiter token per
attempt and runs ``auth`` afresh on every attempt: a WSSE header or an OAuth signature
must never be replayed, which is why urllib3-level retries stay off.
"""

from __future__ import annotations

import copy
import email.utils
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from magsync import __version__
from magsync.errors import RetriableError
from magsync.util import jsoncodec

RETRY_STATUSES = frozenset({408, 423, 429, 500, 502, 503, 504})
USER_AGENT = f"magsync/{__version__}"
BODY_PREVIEW = 200
_TRANSIENT = (requests.ConnectionError, requests.Timeout,
              requests.exceptions.ChunkedEncodingError)
# Header values that carry a credential or a signature; redacted from every message.
_SENSITIVE_HEADERS = ("authorization", "x-wsse", "proxy-authorization", "cookie")
_QUOTED_PARAM = re.compile(r'(?:PasswordDigest|Nonce|oauth_signature|oauth_token|'
                           r'oauth_consumer_key|oauth_nonce)="([^"]*)"')


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


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (also URL-encoded) replaced by ``***``."""
    variants: set[str] = set()
    for s in secrets:
        if s:
            variants.update({s, quote(s, safe=""), quote_plus(s), unquote(s)})
    for v in sorted((v for v in variants if v), key=len, reverse=True):
        text = text.replace(v, "***")
    return text


def credentials_in(headers: Mapping[str, str] | None) -> list[str]:
    """The credential values a request's headers carry (whole values and their parts)."""
    found: list[str] = []
    for name, value in (headers or {}).items():
        if name.lower() not in _SENSITIVE_HEADERS or not value:
            continue
        found.append(value)
        found.extend(m.group(1) for m in _QUOTED_PARAM.finditer(value))
        scheme, _, rest = value.partition(" ")
        if scheme.lower() in ("bearer", "basic") and rest:
            found.append(rest.strip())
    return [f for f in found if f]


class HttpClient:
    """A retrying, rate-limited, redacting session for one remote service."""

    def __init__(self, service: str, base_url: str, *, auth: AuthBase | None = None,
                 timeout: float = 30.0, retry: RetryPolicy = RetryPolicy(),
                 limiter: RateLimiter | None = None, secrets: Iterable[str] = (),
                 pool_size: int = 10, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 abort: Abort | None = None) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.retry = retry
        self.limiter = limiter
        self.secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = random.Random()
        # Shared with the with_retry clones, and with the run's other client when the
        # caller passes the same one.
        self.abort = abort or Abort()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # Several threads share the session: one pooled connection per worker.
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(1, pool_size),
                              max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def with_retry(self, retry: RetryPolicy) -> HttpClient:
        """The same session, limiter and auth with another retry budget."""
        clone = copy.copy(self)
        clone.retry = retry
        return clone

    def url_for(self, path_or_url: str) -> str:
        """An absolute URL: ``path_or_url`` as is, or joined to ``base_url``."""
        if re.match(r"^https?://", path_or_url):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(self, method: str, path_or_url: str, *, params: Any = None,
                json: Any = None, data: Any = None,
                headers: Mapping[str, str] | None = None,
                stream: bool = False) -> requests.Response:
        """Send one request, retrying transient failures within the retry budget.

        Returns any answer that is not worth retrying (2xx, most 4xx) for the caller to
        interpret; raises ``RetriableError`` once the budget is spent.
        """
        url = self.url_for(path_or_url)
        send_headers = dict(headers or {})
        if json is not None:  # encoded once, not per attempt, with the fast encoder
            data = jsoncodec.dumps(json)
            send_headers.setdefault("Content-Type", "application/json")
        start = self._clock()
        attempt, slept = 0, 0.0
        while True:
            attempt += 1
            self._take_slot()
            try:
                resp = self.session.request(
                    method, url, params=params, data=data,
                    headers=dict(send_headers), auth=self.auth,
                    timeout=(self.timeout, self.timeout), stream=stream)
            except _TRANSIENT as exc:
                failure = self.redact(f"{type(exc).__name__}: {exc}",
                                      getattr(exc.request, "headers", None))
                wait = self.retry.backoff(attempt, self._rng)
            else:
                if resp.status_code not in RETRY_STATUSES:
                    return resp
                failure = self.describe(resp)
                wait = self._wait_for(resp, attempt)
                if resp.status_code == 429 and self.limiter is not None:
                    # Every thread of this client waits, not only the one that was told.
                    self.limiter.hold(wait)
                resp.close()
            # Counting our own sleeps too keeps a stubbed clock from retrying forever.
            spent = max(self._clock() - start, slept)
            if spent + wait > self.retry.budget:
                error = self._gave_up(method, url, attempt, spent, failure)
                self.abort.trip(error)
                raise error
            self._pause(wait)
            slept += wait

    def _take_slot(self) -> None:
        """The rate limiter's slot for one attempt; none once another request of the run
        gave up (the run is over: ``Abort``)."""
        if self.limiter is not None and not self.abort.tripped:
            self.limiter.acquire()
        if self.abort.tripped:
            raise self.abort.error()

    def _pause(self, seconds: float) -> None:
        """The backoff before a retry; cut short when another request gave up."""
        if self._sleep is time.sleep:
            self.abort.wait(seconds)
        else:  # an injected sleep (tests): the abort is seen at the next attempt
            self._sleep(seconds)

    @contextmanager
    def stream(self, method: str, path_or_url: str, *, params: Any = None,
               headers: Mapping[str, str] | None = None) -> Iterator[requests.Response]:
        """A request whose body the caller reads as it arrives (export downloads, which
        may be larger than any reply is read into memory): retried, authenticated and
        rate-limited like ``request`` until an answer comes; the connection goes back to
        the pool when the block ends."""
        resp = self.request(method, path_or_url, params=params, headers=headers,
                            stream=True)
        try:
            yield resp
        finally:
            resp.close()

    def _wait_for(self, resp: requests.Response, attempt: int) -> float:
        """The server's own wait for a 429 when it names one, else the backoff."""
        backoff = self.retry.backoff(attempt, self._rng)
        if resp.status_code != 429:
            return backoff
        told = parse_rate_limit_wait(resp.headers, self._wall_clock())
        return told if told is not None and told > 0 else backoff

    def _gave_up(self, method: str, url: str, attempts: int, spent: float,
                 failure: str) -> RetriableError:
        where = self.redact(f"{method} {url}")
        noun = "attempt" if attempts == 1 else "attempts"
        return RetriableError(
            f"{self.service} did not answer successfully after {attempts} {noun} in "
            f"{spent:.0f} s ({where}): {failure}",
            service=self.service, hint=f"{self.service} seems unavailable or overloaded; "
                                       "the next run will try again")

    def describe(self, resp: requests.Response) -> str:
        """``HTTP <status> <first bytes of the body>``, redacted, for error messages."""
        try:
            body = resp.content[:BODY_PREVIEW * 2].decode("utf-8", "replace")
        except (requests.RequestException, RuntimeError):
            body = ""
        body = " ".join(body.split())[:BODY_PREVIEW]
        headers = resp.request.headers if resp.request is not None else None
        return self.redact(f"HTTP {resp.status_code} {body}".rstrip(), headers)

    def redact(self, text: str, headers: Mapping[str, str] | None = None) -> str:
        """``text`` without the config's secrets or the credentials in ``headers``."""
        return redact(text, [*self.secrets, *credentials_in(headers)])

    def close(self) -> None:
        """Close the pooled connections (shared with every ``with_retry`` clone)."""
        self.session.close()


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
