"""Emarsys auth, envelope and retries against the sandbox Emarsys (real HTTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from magsync.emarsys.auth import OAuth2ClientCredentials, WsseAuth, build_wsse_header, wsse_digest
from magsync.emarsys.client import EmarsysApiError, api_url_for
from magsync.errors import AuthError, FatalRemoteError, RetriableError
from magsync.pacing import RetryPolicy
from magsync.sandbox.emarsys.server import EmarsysSandbox
from tests.helpers.emarsys import CLIENT_SECRET, SECRET, make_client, make_config


@pytest.fixture()
def sandbox() -> Iterator[EmarsysSandbox]:
    srv = EmarsysSandbox(secret=SECRET, client_secret=CLIENT_SECRET)
    with srv:
        yield srv


def test_wsse_digest_test_vector() -> None:
    assert wsse_digest("d36e316282959a9ed4c89851497a717f", "2014-03-20T12:51:45Z",
                       "customersecret") == \
        "YWQyNWE5Y2JkOTY2ZTU1ODg2M2QzNzVhNDZlZGQwZjg5YjZlZTk4Yw=="
    header = build_wsse_header("u", "customersecret", "d36e316282959a9ed4c89851497a717f",
                               "2014-03-20T12:51:45Z")
    assert 'PasswordDigest="YWQyNWE5Y2JkOTY2ZTU1ODg2M2QzNzVhNDZlZGQwZjg5YjZlZTk4Yw=="' \
        in header


def test_wsse_accepted_and_fresh_per_retry(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    sandbox.fail_next_error(2, status=503, code=10001)
    data = client.call("GET", "/field")
    assert any(f["id"] == "3" for f in data)
    seen = [r.headers["x-wsse"] for r in sandbox.requests("GET", r"/field$")]
    nonces = [re.search(r'Nonce="([0-9a-f]{32})"', h).group(1)  # type: ignore[union-attr]
              for h in seen]
    assert len(nonces) == 3 and len(set(nonces)) == 3


def test_reused_nonce_is_refused_by_sandbox(sandbox: EmarsysSandbox) -> None:
    """A replayed WSSE header fails: the reason retries must re-run the auth."""
    cfg = make_config(sandbox)
    fixed = WsseAuth(sandbox.username, SECRET, make_nonce=lambda: "ab" * 16)
    client = make_client(cfg)
    client.http.auth = fixed
    client.call("GET", "/field")
    with pytest.raises(AuthError):
        client.call("GET", "/field")


def test_wrong_wsse_secret_gives_auth_error_without_secret(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox, secret="not-the-secret-123"))
    with pytest.raises(AuthError) as info:
        client.call("GET", "/field")
    msg = str(info.value)
    assert msg.startswith("Emarsys refused the credentials (auth method wsse)")
    assert "hint:" in msg and "not-the-secret-123" not in msg
    header = sandbox.requests("GET", r"/field$")[0].headers["x-wsse"]
    digest = re.search(r'PasswordDigest="([^"]+)"', header).group(1)  # type: ignore[union-attr]
    assert digest not in msg
    assert info.value.exit_code == 3


def test_oauth2_token_reused_and_api_v3(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox, method="oauth2"))
    assert client.http.base_url.endswith("/api/v3")
    for _ in range(3):
        client.call("GET", "/field")
    assert len(sandbox.requests("POST", r"/oauth2/token")) == 1
    assert len(sandbox.requests("GET", r"/api/v3/field$")) == 3


def test_oauth2_refresh_on_401(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox, method="oauth2"))
    client.call("GET", "/field")
    sandbox.expire_tokens()
    client.call("GET", "/field")  # 401, new token, same request once more
    assert len(sandbox.requests("POST", r"/oauth2/token")) == 2
    statuses = [r.status for r in sandbox.requests("GET", r"/api/v3/field$")]
    assert statuses == [200, 401, 200]


def test_oauth2_refresh_before_expiry(sandbox: EmarsysSandbox) -> None:
    now = [0.0]
    auth = OAuth2ClientCredentials(sandbox.client_id, CLIENT_SECRET, sandbox.token_url,
                                   clock=lambda: now[0])
    first = auth.token()
    now[0] = 3600 - 61
    assert auth.token() == first and auth.fetches == 1
    now[0] = 3600 - 59  # inside the refresh margin
    assert auth.token() != first and auth.fetches == 2
    auth.close()


def test_oauth2_bad_client_secret(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox, method="oauth2", secret="wrong-client-pw"))
    with pytest.raises(AuthError) as info:
        client.call("GET", "/field")
    msg = str(info.value)
    assert "OAuth2 client credentials" in msg and "wrong-client-pw" not in msg
    assert "client_secret" in msg  # the hint names what to check


def test_api_url_for_oauth2() -> None:
    assert api_url_for("https://api.emarsys.net/api/v2/", "oauth2") == \
        "https://api.emarsys.net/api/v3"
    assert api_url_for("https://api.emarsys.net/api/v2", "wsse") == \
        "https://api.emarsys.net/api/v2"
    assert api_url_for("https://proxy.example/emarsys", "oauth2") == \
        "https://proxy.example/emarsys"


def test_403_names_missing_permission(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    sandbox.fail_next_error(1, status=403, code=1, text="Access denied to field")
    with pytest.raises(AuthError) as info:
        client.call("GET", "/field")
    assert "lacks a permission for GET /field" in str(info.value)
    assert SECRET not in str(info.value)


def test_html_from_proxy_is_fatal_with_preview(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    page = f"<html><body>Bad gateway config {SECRET}</body></html>".encode()
    sandbox.faults.fail_next(1, 400, page, "text/html")
    with pytest.raises(FatalRemoteError) as info:
        client.call("GET", "/field")
    msg = str(info.value)
    assert "not an Emarsys reply: HTTP 400 <html><body>Bad gateway" in msg
    assert SECRET not in msg and "***" in msg


def test_nonzero_reply_code_is_typed(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    with pytest.raises(EmarsysApiError) as info:
        client.call("POST", "/field", json={"name": "E-Mail", "application_type": "shorttext"})
    assert info.value.reply_code == 9002 and info.value.status == 400
    assert "replyCode 9002" in str(info.value)


def test_429_waits_for_reset(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox), retry=RetryPolicy(budget=10))
    sandbox.fail_next_429(1, reset_in=0.5)
    client.call("GET", "/field")
    assert [r.status for r in sandbox.requests("GET", r"/field$")] == [429, 200]
    assert sandbox.early_requests == 0


def test_retry_budget_runs_out(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox),
                         retry=RetryPolicy(budget=0.3, base_delay=0.05, max_delay=0.1))
    sandbox.fail_next_error(1000, status=503, code=10001, text="Service unavailable")
    with pytest.raises(RetriableError) as info:
        client.call("GET", "/field")
    msg = str(info.value)
    assert msg.startswith("Emarsys did not answer successfully after ")
    assert "HTTP 503" in msg and SECRET not in msg
    assert info.value.exit_code == 3


def test_with_retry_shares_caches(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    short = client.with_retry(RetryPolicy(budget=1))
    assert short.memo("x", lambda: 1) == 1
    assert client.memo("x", lambda: 2) == 1
