"""healthchecks.io-style pings around a writing run (SPEC section 9).

``GET URL/start`` when the command starts (once it holds the lock), then ``GET URL`` when
it ends with exit 0 or ``GET URL/CODE`` with any other exit code. Each ping has a hard
10 second budget (it runs in a daemon thread that is waited for at most that long), never
changes the run's outcome, and a failure is a warning. The URL is a secret: messages
name only its scheme and host.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import requests

from magsync.config import Secret
from magsync.errors import FatalRemoteError, MagsyncError, RetriableError
from magsync.http import RETRY_STATUSES, HttpClient
from magsync.pacing import RetryPolicy, apply_retry_budget_override
from magsync.util.logs import add_secrets, get_logger

log = get_logger("monitoring")
MIN_WAIT = 2.0  # a ping makes one attempt whatever its budget (tests shorten it to 0)


PING_BUDGET = 10.0  # seconds a monitoring ping may take, retries included


# Not HttpClient.request: its budget bounds the waits between attempts, not how long an
# attempt may take, and a ping must be over within its budget whatever the server does.
def ping(url: str, *, budget: float = PING_BUDGET) -> None:
    """``GET url`` (a healthchecks-style monitoring ping) on a session of the one session
    factory, retried within ``budget`` seconds on connection errors, 429 and 5xx;
    ``RemoteError`` when no 2xx/3xx came back. The URL is a secret: the error's message
    holds neither it nor its path."""
    client = HttpClient("monitoring ping", url, secrets=[url])
    policy = RetryPolicy(budget=budget, base_delay=0.5, max_delay=2.0)
    deadline = time.monotonic() + budget
    attempt, reason = 0, "no answer"
    try:
        while attempt == 0 or deadline - time.monotonic() > 0.1:  # one attempt at least
            attempt += 1
            timeout = min(5.0, max(1.0 if attempt == 1 else 0.1, deadline - time.monotonic()))
            try:
                resp = client.session.get(url, timeout=(timeout, timeout),
                                          allow_redirects=False)
                resp.close()
            except requests.Timeout:
                reason = "timed out"
            except requests.RequestException as exc:
                reason = f"connection failed ({type(exc).__name__})"
            else:
                if resp.status_code < 400:
                    return
                reason = f"HTTP {resp.status_code}"
                if resp.status_code not in RETRY_STATUSES:
                    raise FatalRemoteError(reason, service="monitoring ping",
                                           status=resp.status_code)
            time.sleep(max(0.0, min(policy.backoff(attempt), deadline - time.monotonic())))
    finally:
        client.close()
    noun = "attempt" if attempt == 1 else "attempts"
    raise RetriableError(f"{reason} ({attempt} {noun} in {budget:g} s)",
                         service="monitoring ping")


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: all of a ping URL that may be printed."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return "(ping URL)"


def ping_target(url: str, exit_code: int | None) -> str:
    """The URL to GET: ``/start`` (``exit_code`` None), the URL itself for exit 0, else
    ``/CODE``."""
    base = url.rstrip("/")
    if exit_code is None:
        return f"{base}/start"
    return base if exit_code == 0 else f"{base}/{exit_code}"


class Pinger:
    """The pings of one run of ``command`` (nothing at all when ``url`` is None)."""

    def __init__(self, command: str, url: Secret | None, *, budget: float | None = None
                 ) -> None:
        self.command = command
        self.url = url.reveal() if url is not None else None
        # $MAGSYNC_RETRY_BUDGET shortens it, as every other retry budget (tests)
        self.budget = budget if budget is not None else min(
            PING_BUDGET, apply_retry_budget_override(RetryPolicy(PING_BUDGET)).budget)
        self._start: threading.Thread | None = None
        self.threads: list[threading.Thread] = []  # for tests: the pings sent so far
        if self.url:
            path = urlsplit(self.url).path
            add_secrets([self.url, self.url.rstrip("/"), path.rstrip("/")])

    def start(self) -> None:
        """Send ``/start`` in the background: the run does not wait for it."""
        if self.url:
            self._start = self._send(None)

    def finish(self, exit_code: int) -> None:
        """Send the end ping once the start ping is answered (or its budget is spent),
        waiting at most the budget for each."""
        if not self.url:
            return
        if self._start is not None:
            self._wait(self._start, "start")
        self._wait(self._send(exit_code), f"exit {exit_code}")

    def _wait(self, thread: threading.Thread, what: str) -> None:
        thread.join(max(self.budget, MIN_WAIT))
        if thread.is_alive():  # e.g. a name lookup that hangs: requests cannot time it out
            log.warning("monitoring ping (%s) of %s to %s: no answer within %.0f s", what,
                        self.command, origin(self.url or ""), self.budget)

    def _send(self, exit_code: int | None) -> threading.Thread:
        assert self.url is not None
        target = ping_target(self.url, exit_code)
        what = "start" if exit_code is None else f"exit {exit_code}"

        def send() -> None:
            try:
                ping(target, budget=self.budget)
            except Exception as exc:  # a ping never changes the run's outcome
                reason = exc.message if isinstance(exc, MagsyncError) else type(exc).__name__
                log.warning("monitoring ping (%s) of %s to %s failed: %s", what,
                            self.command, origin(self.url or ""), reason)

        thread = threading.Thread(target=send, name=f"ping-{self.command}", daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread
