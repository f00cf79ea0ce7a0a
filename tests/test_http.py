"""The shared HTTP layer against a scripted loopback server (real HTTP, no mocks)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from requests.auth import AuthBase

from magsync.errors import RetriableError
from magsync.http import HttpClient, credentials_in, redact
from magsync.pacing import RateLimiter, RetryPolicy, parse_rate_limit_wait
from magsync.sandbox.base import Request, Response, SandboxServer


class Scripted(SandboxServer):
    """Answers /seq with the next scripted (status, headers, body), then 200s."""

    service = "scripted"

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.arrivals: list[float] = []
        super().__init__()

    def routes(self) -> list[tuple[str, str, object]]:  # type: ignore[override]
        return [("GET", r"/seq", self._answer_seq), ("PUT", r"/seq", self._answer_seq)]

    def _answer_seq(self, req: Request) -> Response:
        self.arrivals.append(time.time())
        if self.script:
            status, headers, body = self.script.pop(0)
            return Response(status, body, "application/json", headers)
        return Response.json({"ok": True})


class FakeClock:
    """A clock that only moves when somebody sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


class CountingAuth(AuthBase):
    """Stamps every attempt with a fresh, secret-looking header."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer tok-{next(self.counter):04d}-sekrit"
        return r


@pytest.fixture()
def server() -> Iterator[Scripted]:
    with Scripted() as srv:
        yield srv  # type: ignore[misc]


def make_client(server: Scripted, clock: FakeClock, **kw: object) -> HttpClient:
    kw.setdefault("retry", RetryPolicy(budget=30, base_delay=0.5, max_delay=4))
    return HttpClient("Scripted", server.url, sleep=clock.sleep, clock=clock,
                      timeout=5, **kw)  # type: ignore[arg-type]


def test_backoff_sequence_then_success(server: Scripted) -> None:
    server.script = [(503, {}, b"{}"), (503, {}, b"{}")]
    clock = FakeClock()
    resp = make_client(server, clock).request("GET", "/seq")
    assert resp.status_code == 200
    assert len(server.requests("GET", "/seq")) == 3
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.5 and 0 <= clock.sleeps[1] <= 1.0


def test_auth_runs_afresh_on_every_attempt(server: Scripted) -> None:
    server.script = [(502, {}, b""), (504, {}, b"")]
    resp = make_client(server, FakeClock(), auth=CountingAuth()).request("GET", "/seq")
    assert resp.status_code == 200
    seen = [r.headers["authorization"] for r in server.requests("GET", "/seq")]
    assert seen == ["Bearer tok-0001-sekrit", "Bearer tok-0002-sekrit",
                    "Bearer tok-0003-sekrit"]


def test_user_agent_and_base_url_join(server: Scripted) -> None:
    make_client(server, FakeClock()).request("GET", "seq")
    ua = server.requests("GET", "/seq")[0].headers["user-agent"]
    assert ua.startswith("magsync/")


def test_client_errors_are_returned_not_retried(server: Scripted) -> None:
    server.script = [(400, {}, b'{"replyCode": 1000}')]
    clock = FakeClock()
    resp = make_client(server, clock).request("PUT", "/seq", json={"a": 1})
    assert resp.status_code == 400
    assert clock.sleeps == []
    assert server.requests("PUT", "/seq")[0].json() == {"a": 1}


def test_dropped_connection_is_retried(server: Scripted) -> None:
    server.faults.drop_next(2)
    clock = FakeClock()
    resp = make_client(server, clock).request("GET", "/seq")
    assert resp.status_code == 200
    assert len(clock.sleeps) == 2


def test_429_waits_for_rate_limit_reset_header(server: Scripted) -> None:
    clock = FakeClock()
    wall = 1_700_000_000.0
    server.script = [(429, {"X-RateLimit-Reset": str(int(wall) + 7)}, b"{}")]
    client = HttpClient("Scripted", server.url, sleep=clock.sleep, clock=clock,
                        wall_clock=lambda: wall)
    assert client.request("GET", "/seq").status_code == 200
    assert clock.sleeps == [7.0]


def test_429_waits_for_retry_after(server: Scripted) -> None:
    clock = FakeClock()
    server.script = [(429, {"Retry-After": "3"}, b"{}")]
    assert make_client(server, clock).request("GET", "/seq").status_code == 200
    assert clock.sleeps == [3.0]


def test_429_reset_really_holds_requests_back(server: Scripted) -> None:
    reset = int(time.time()) + 1
    server.script = [(429, {"x-ratelimit-reset": str(reset)}, b"{}")]
    client = HttpClient("Scripted", server.url, retry=RetryPolicy(budget=10))
    assert client.request("GET", "/seq").status_code == 200
    assert len(server.arrivals) == 2
    assert server.arrivals[1] >= reset  # no request before the reset


def test_budget_exhausted_raises_retriable_with_redacted_message(server: Scripted) -> None:
    body = b'{"replyCode": 7003, "replyText": "overloaded, key=topsecret"}'
    server.script = [(503, {}, body)] * 50
    clock = FakeClock()
    client = make_client(server, clock, secrets=["topsecret"], auth=CountingAuth(),
                         retry=RetryPolicy(budget=10, base_delay=1, max_delay=2))
    with pytest.raises(RetriableError) as info:
        client.request("GET", "/seq?token=topsecret")
    msg = str(info.value)
    assert msg.startswith("Scripted did not answer successfully after ")
    assert "HTTP 503" in msg and "7003" in msg
    assert "topsecret" not in msg and "sekrit" not in msg
    attempts = len(server.requests("GET", "/seq"))
    assert f"after {attempts} attempts" in msg
    assert sum(clock.sleeps) <= 10
    assert info.value.exit_code == 3


def test_once_a_request_gives_up_the_others_stop_retrying(server: Scripted) -> None:
    # Two requests in the same outage: one with a short budget, one with a long one.
    # Once the first gives up the run is over, so the second must not go on retrying
    # (it would succeed here once the outage ends) nor may a new request start.
    server.script = [(503, {}, b'{"replyCode": 10001}')] * 100_000
    quick = HttpClient("Scripted", server.url, timeout=5,
                       retry=RetryPolicy(budget=0.3, base_delay=0.01, max_delay=0.05))
    patient = quick.with_retry(RetryPolicy(budget=60, base_delay=0.01, max_delay=0.05))
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["response"] = patient.request("GET", "/seq")
        except RetriableError as exc:
            outcome["error"] = exc

    other = threading.Thread(target=run)
    other.start()
    with pytest.raises(RetriableError) as gave_up:
        quick.request("GET", "/seq")
    other.join(timeout=2)  # ordering only: an abandoned request has stopped by now
    server.script = []  # the outage ends: a request still retrying now succeeds
    other.join(timeout=30)

    assert not other.is_alive() and "response" not in outcome
    assert str(outcome["error"]) == str(gave_up.value)  # the failure that stopped it
    sent = len(server.requests("GET", "/seq"))
    with pytest.raises(RetriableError):
        patient.request("GET", "/seq")
    assert len(server.requests("GET", "/seq")) == sent  # no new request starts


def test_with_retry_shares_session_but_not_budget(server: Scripted) -> None:
    clock = FakeClock()
    client = make_client(server, clock)
    short = client.with_retry(RetryPolicy(budget=0.0))
    assert short.session is client.session and client.retry.budget == 30
    server.script = [(503, {}, b"")]
    with pytest.raises(RetriableError, match="after 1 attempt in"):
        short.request("GET", "/seq")


def test_limiter_token_per_attempt(server: Scripted) -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    server.script = [(503, {}, b"")]
    make_client(server, clock, limiter=limiter,
                retry=RetryPolicy(budget=30, base_delay=0.0)).request("GET", "/seq")
    # Two attempts: the second waits a whole limiter interval (1 s at 60/min).
    assert clock.sleeps == [0.0, 1.0]


def test_rate_limiter_holds_rate_across_threads() -> None:
    clock = FakeClock()  # frozen unless slept: every slot is a reservation
    lock = threading.Lock()
    waits: list[float] = []

    def record(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    limiter = RateLimiter(120, clock=clock, sleep=record)

    def worker() -> None:
        for _ in range(25):
            limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 200 acquisitions at 120/min: one immediate, 199 reserved slots 0.5 s apart.
    assert len(waits) == 199
    assert sorted(waits) == pytest.approx([0.5 * i for i in range(1, 200)])


def test_rate_limiter_hold_delays_every_later_request() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.hold(5.0)  # a 429 said: come back in 5 s
    limiter.hold(2.0)  # a shorter wait never shortens a hold
    limiter.acquire()
    limiter.acquire()
    assert clock.sleeps == pytest.approx([5.0, 0.1])


def test_rate_limiter_hold_stops_a_caller_whose_slot_was_reserved_before_it() -> None:
    # A worker reserved the slot 0.1 s ahead and sleeps towards it; meanwhile another
    # worker's request comes back 429 "reset in 1.7 s". The sleeper must not send at its
    # old slot: it waits for the reset too.
    clock = FakeClock()
    sent_at: list[float] = []

    def sleep(seconds: float) -> None:
        if not clock.sleeps:  # the 429 arrives during the first sleep
            limiter.hold(1.7)
        clock.sleep(seconds)

    limiter = RateLimiter(600, clock=clock, sleep=sleep)
    limiter.acquire()
    sent_at.append(clock.now)
    limiter.acquire()
    sent_at.append(clock.now)
    assert sent_at[1] >= 1000.0 + 1.7
    assert clock.sleeps == pytest.approx([0.1, 1.6])


def test_rate_limiter_does_not_bank_idle_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 100  # idle
    limiter.acquire()
    limiter.acquire()
    assert clock.sleeps == [1.0]


def test_redact_and_credentials_in() -> None:
    wsse = ('UsernameToken Username="bob", PasswordDigest="ZGlnZXN0", '
            'Nonce="abc123", Created="2024-01-01T00:00:00Z"')
    creds = credentials_in({"X-WSSE": wsse, "Accept": "x"})
    assert "ZGlnZXN0" in creds and wsse in creds
    text = f"failed with header {wsse} and s3cr/t and s3cr%2Ft"
    out = redact(text, ["s3cr/t", *creds])
    assert "ZGlnZXN0" not in out and "s3cr" not in out
    assert redact("nothing", ["", "zzz"]) == "nothing"


def test_parse_rate_limit_wait() -> None:
    assert parse_rate_limit_wait({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"},
                                 1445412480.0) == 10.0
    assert parse_rate_limit_wait({"Retry-After": "soon"}, 0.0) is None
    assert parse_rate_limit_wait({}, 0.0) is None
