"""The transport rules (SPEC 1 and 3) against misbehaving servers on loopback: no
redirect is followed, no reply is read past 64 MB, a bad TLS certificate and a host name
that does not exist fail at once, and every network failure is one short line naming
the system, the host and what happened."""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from magsync.errors import FatalRemoteError, RetriableError
from magsync.http import MAX_REPLY_BYTES, HttpClient
from magsync.pacing import RetryPolicy
from magsync.sandbox.pair import SandboxPair
from tests.helpers.hostile import Hostile, self_signed_context, wait_until

RETRY_ENV = "MAGSYNC_RETRY_BUDGET"
LINE_LIMIT = 300


def write_config(pair: SandboxPair, tmp_path: Path, **emarsys: Any) -> Path:
    """The pair's config with the ``emarsys`` section's keys replaced."""
    cfg = pair.config(tmp_path / "state.db")
    cfg["emarsys"].update(emarsys)
    path = tmp_path / "transport.yaml"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


def error_line(err: str) -> str:
    """The one line the CLI printed for the error (and nothing else)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert len(lines[0]) < LINE_LIMIT, lines[0]
    assert "Traceback" not in err and "HTTPConnectionPool" not in err
    assert "Max retries" not in err and "urllib3" not in err
    return lines[0]


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with Hostile("ok") as server:
        yield server


@pytest.fixture
def resolver_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the system resolver's calls per host name (the real resolver answers)."""
    calls: dict[str, int] = {}
    real = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kw: Any) -> Any:
        calls[str(host)] = calls.get(str(host), 0) + 1
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    return calls


# -- redirects --------------------------------------------------------------------------


def test_a_redirect_is_not_followed_and_names_its_target(
        magsync: Any, pair: SandboxPair, tmp_path: Path, hostile: Hostile) -> None:
    with Hostile("ok", host="127.0.0.2") as elsewhere:
        hostile.mode = "redirect"
        hostile.redirect_to = f"{elsewhere.url}/api/v2/field"
        config = write_config(pair, tmp_path, api_url=f"{hostile.url}/api/v2")
        r = magsync("check", config=config)
        assert r.code == 3, r
        line = next(ln for ln in r.out.splitlines() if ln.startswith("FAIL Emarsys"))
        assert "redirect (HTTP 307)" in line and elsewhere.host_port in line, line
        assert "emarsys.api_url" in line
        assert len(line) < LINE_LIMIT
        # the credentials (X-WSSE) never reached the other host
        assert elsewhere.received == [] and elsewhere.connections == 0
        assert len(hostile.received) == 1


def test_a_redirected_sync_stops_with_one_line(magsync: Any, pair: SandboxPair,
                                               tmp_path: Path, hostile: Hostile) -> None:
    hostile.mode = "redirect"
    hostile.redirect_to = "https://elsewhere.example.com/api/v2/field"
    config = write_config(pair, tmp_path, api_url=f"{hostile.url}/api/v2")
    r = magsync("export-initial", config=config)
    assert r.code == 3, r
    line = error_line(r.err)
    assert line.startswith(f"magsync: error: Emarsys at {hostile.host_port} answered GET "
                           "/api/v2/field with a redirect (HTTP 307) to "
                           "https://elsewhere.example.com/api/v2/field"), line


# -- reply size ---------------------------------------------------------------------------


def test_an_endless_reply_is_refused_past_64_mb(magsync: Any, pair: SandboxPair,
                                                tmp_path: Path, hostile: Hostile) -> None:
    hostile.mode = "endless"
    config = write_config(pair, tmp_path, api_url=f"{hostile.url}/api/v2")
    r = magsync("check", config=config)
    assert r.code == 3, r
    line = next(ln for ln in r.out.splitlines() if ln.startswith("FAIL Emarsys"))
    assert f"Emarsys at {hostile.host_port} sent a reply larger than 64 MB" in line, line
    assert len(line) < LINE_LIMIT
    # it stopped reading soon after the cap (the server sends 1 MB writes)
    assert wait_until(lambda: hostile.sent_bytes < hostile.endless_cap)
    assert hostile.sent_bytes < MAX_REPLY_BYTES + 16 * 1024 * 1024


def test_a_reply_is_never_read_whole_into_memory(hostile: Hostile) -> None:
    hostile.mode = "endless"
    client = HttpClient("Emarsys", hostile.url, retry=RetryPolicy(budget=0), timeout=10)
    tracemalloc.start()
    try:
        with pytest.raises(FatalRemoteError, match="larger than 64 MB"):
            client.request("GET", "/api/v2/field")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.close()
    assert peak < MAX_REPLY_BYTES * 1.5, f"peak {peak / 2**20:.0f} MB"


def test_an_announced_huge_body_is_refused_before_reading(hostile: Hostile) -> None:
    hostile.mode = "huge-length"
    client = HttpClient("Emarsys", hostile.url, retry=RetryPolicy(budget=0), timeout=20)
    with pytest.raises(FatalRemoteError, match="larger than 64 MB") as info:
        client.request("GET", "/api/v2/field")
    client.close()
    assert info.value.exit_code == 3


# -- TLS and names ----------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Hostile]:
    ctx = self_signed_context(tmp_path)
    if ctx is None:
        pytest.skip("neither the cryptography package nor the openssl command is "
                    "available to make a self-signed certificate")
    with Hostile("ok", tls=ctx) as server:
        yield server


def test_a_self_signed_certificate_fails_at_once(magsync: Any, pair: SandboxPair,
                                                 tmp_path: Path, tls_server: Hostile,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_ENV, "5")
    config = write_config(pair, tmp_path, api_url=f"{tls_server.url}/api/v2")
    r = magsync("export-initial", config=config)
    assert r.code == 3, r
    line = error_line(r.err)
    assert line.startswith(f"magsync: error: Emarsys at {tls_server.host_port}: TLS "
                           "certificate rejected (self"), line
    assert "REQUESTS_CA_BUNDLE" in line and "emarsys.api_url" in line
    assert tls_server.connections == 1  # not retried
    assert tls_server.received == []


def test_a_host_name_that_does_not_exist_fails_at_once(
        magsync: Any, pair: SandboxPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        resolver_calls: dict[str, int]) -> None:
    monkeypatch.setenv(RETRY_ENV, "5")
    host = "magsync-no-such-host.invalid"
    config = write_config(pair, tmp_path, api_url=f"https://{host}/api/v2")
    r = magsync("export-initial", config=config)
    assert r.code == 3, r
    line = error_line(r.err)
    assert line == (f"magsync: error: Emarsys at {host}: name not resolved (no such host) "
                    "(GET /api/v2/field) (hint: check the host name in the URL; check "
                    "emarsys.api_url)")
    assert resolver_calls[host] == 1  # not retried


def test_a_temporary_resolver_failure_is_retried(
        hostile: Hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo
    failures = [socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
                for _ in range(2)]

    def flaky(host: Any, *args: Any, **kw: Any) -> Any:
        if host == "flaky-dns.test":
            if failures:
                raise failures.pop()
            host = "127.0.0.1"
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    port = hostile.host_port.rsplit(":", 1)[1]
    client = HttpClient("Emarsys", f"http://flaky-dns.test:{port}", sleep=lambda s: None,
                        retry=RetryPolicy(budget=30))
    assert client.request("GET", "/api/v2/field").status_code == 200
    assert failures == [] and len(hostile.received) == 1
    client.close()
    # and with no budget left it says what happened
    failures.append(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
    with pytest.raises(RetriableError) as info:
        client.with_retry(RetryPolicy(budget=0)).request("GET", "/x")
    assert "(flaky-dns.test:" in str(info.value)
    assert "name not resolved (temporary resolver failure)" in str(info.value)


# -- refused, timed out, HTTP status ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_one_short_line(magsync: Any, pair: SandboxPair,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_ENV, "0.3")
    port = free_port()
    config = write_config(pair, tmp_path, api_url=f"http://127.0.0.1:{port}/api/v2")
    r = magsync("export-initial", config=config)
    assert r.code == 3, r
    line = error_line(r.err)
    assert line.startswith("magsync: error: Emarsys did not answer successfully after "), line
    assert f"(127.0.0.1:{port}: connection refused; GET /api/v2/field)" in line
    assert "the next run will try again" in line


def test_a_server_that_never_answers_times_out(magsync: Any, pair: SandboxPair,
                                               tmp_path: Path, hostile: Hostile,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_ENV, "0")
    hostile.mode = "silent"
    config = write_config(pair, tmp_path, api_url=f"{hostile.url}/api/v2", timeout=1)
    r = magsync("export-initial", config=config)
    assert r.code == 3, r
    line = error_line(r.err)
    assert f"({hostile.host_port}: timed out waiting for the reply; GET /api/v2/field)" \
        in line, line


def test_a_body_that_stalls_times_out_and_is_retried(hostile: Hostile) -> None:
    hostile.mode = "stall"
    client = HttpClient("Emarsys", hostile.url, timeout=1, sleep=lambda s: None,
                        clock=lambda: 0.0,  # only the (stubbed) sleeps spend the budget
                        retry=RetryPolicy(budget=0.5, base_delay=0.4, max_delay=0.4))
    with pytest.raises(RetriableError) as info:
        client.request("GET", "/api/v2/field")
    client.close()
    assert f"({hostile.host_port}: timed out waiting for the reply; GET /api/v2/field)" \
        in str(info.value)
    assert len(hostile.received) >= 2  # retried


def test_http_423_is_retried_like_a_5xx(magsync: Any, pair: SandboxPair) -> None:
    pair.emarsys.faults.fail_next(2, 423)
    r = magsync("check")
    assert r.code == 0, r
    statuses = [q.status for q in pair.emarsys.requests()]
    assert statuses[:3] == [423, 423, 200]


def test_a_5xx_after_the_budget_is_one_short_line(magsync: Any, pair: SandboxPair,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_ENV, "0.2")
    pair.emarsys.faults.fail_next(1000, 503, b'{"replyCode": 10001, "replyText": "' +
                                  b"x" * 5000 + b'"}')
    r = magsync("export-initial")
    assert r.code == 3, r
    line = error_line(r.err)
    host = pair.emarsys.api_url.split("//", 1)[1].split("/", 1)[0]
    assert f"({host}: HTTP 503 " in line and "; GET /api/v2/field)" in line, line


def test_a_wrong_base_url_path_says_to_check_base_url(magsync: Any, pair: SandboxPair,
                                                      tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "route.yaml", tmp_path / "state.db",
                               magento={"base_url": f"{pair.magento.url}/shop/index.php"})
    r = magsync("check", config=config)
    assert r.code == 3, r
    line = next(ln for ln in r.out.splitlines() if ln.startswith("FAIL Magento"))
    assert "has no REST route for GET /V1/customers/search" in line, line
    assert "Request does not match any route" in line
    assert "check magento.base_url" in line
    assert len(line) < LINE_LIMIT


def test_stream_leaves_a_2xx_body_to_the_caller(hostile: Hostile) -> None:
    hostile.mode = "endless"
    client = HttpClient("Emarsys", hostile.url, retry=RetryPolicy(budget=0))
    resp = client.request("GET", "/export/1/data", stream=True)
    assert resp.status_code == 200
    assert len(resp.raw.read(1024)) == 1024  # the caller streams it, under its own bounds
    resp.close()
    client.close()
