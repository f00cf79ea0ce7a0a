"""The Emarsys Core API client: auth, envelope, typed errors.

Every reply is ``{"replyCode", "replyText", "data"}``. A non-zero replyCode fails the
whole request and becomes a typed error; per-contact errors inside a 200 reply are data
for the caller (``contacts.py``), never raised here.

With ``auth.method: oauth2`` the API lives under ``/api/v3``: an ``api_url`` ending in
``/api/v2`` (the WSSE default) is rewritten to ``/api/v3``; any other ``api_url`` is used
as given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests
from requests.auth import AuthBase

from magsync.config import EmarsysConfig
from magsync.emarsys.auth import OAuth2ClientCredentials, WsseAuth
from magsync.errors import AuthError, FatalRemoteError
from magsync.http import HttpClient
from magsync.network import clip, fit, host_of
from magsync.pacing import DEFAULT_RETRY, Abort, RateLimiter, RetryPolicy
from magsync.util import jsoncodec

SERVICE = "Emarsys"
T = TypeVar("T")


class EmarsysApiError(FatalRemoteError):
    """Emarsys failed a whole request with a non-zero replyCode."""

    def __init__(self, message: str, *, status: int, reply_code: int | None,
                 reply_text: str, hint: str | None = None) -> None:
        super().__init__(message, service=SERVICE, status=status, code=reply_code,
                         hint=hint)
        self.reply_code = reply_code
        self.reply_text = reply_text


def api_url_for(api_url: str, method: str) -> str:
    """The API base for an auth method: OAuth 2.0 credentials work on /api/v3 only."""
    url = api_url.rstrip("/")
    if method == "oauth2" and url.endswith("/api/v2"):
        return url[: -len("/api/v2")] + "/api/v3"
    return url


def build_auth(cfg: EmarsysConfig, *, retry: RetryPolicy = DEFAULT_RETRY,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> AuthBase:
    """The auth object the config asks for."""
    a = cfg.auth
    if a.method == "oauth2":
        assert a.client_id is not None and a.client_secret is not None
        return OAuth2ClientCredentials(a.client_id.reveal(), a.client_secret.reveal(),
                                       a.token_url, retry=retry, timeout=cfg.timeout,
                                       clock=clock, sleep=sleep)
    assert a.username is not None and a.secret is not None
    return WsseAuth(a.username.reveal(), a.secret.reveal())


class EmarsysClient:
    """One Emarsys account: ``call`` sends a request and unwraps the envelope."""

    def __init__(self, http: HttpClient, *, auth_method: str = "wsse") -> None:
        self.http = http
        self.auth_method = auth_method
        self._memo: dict[str, Any] = {}
        self._memo_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: EmarsysConfig, *, secrets: Iterable[str] = (),
                    retry: RetryPolicy = DEFAULT_RETRY,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic,
                    abort: Abort | None = None) -> EmarsysClient:
        """A client with the config's auth, rate limit, timeout and pool size.

        ``secrets`` should be ``config.iter_secrets(cfg)`` so that no error shows one;
        ``abort`` is the run's stop signal when it has one (see ``http.Abort``).
        """
        auth = build_auth(cfg, retry=retry, sleep=sleep, clock=clock)
        limiter = RateLimiter(cfg.requests_per_minute, clock=clock, sleep=sleep)
        own = [s.reveal() for s in vars(cfg.auth).values() if hasattr(s, "reveal")]
        http = HttpClient(SERVICE, api_url_for(cfg.api_url, cfg.auth.method), auth=auth,
                          timeout=cfg.timeout, retry=retry, limiter=limiter,
                          secrets=[*secrets, *own], pool_size=cfg.concurrency + 2,
                          sleep=sleep, clock=clock, setting="emarsys.api_url",
                          abort=abort)
        return cls(http, auth_method=cfg.auth.method)

    def with_retry(self, retry: RetryPolicy) -> EmarsysClient:
        """The same account and caches with another retry budget (sync-realtime)."""
        clone = EmarsysClient(self.http.with_retry(retry), auth_method=self.auth_method)
        clone._memo, clone._memo_lock = self._memo, self._memo_lock
        return clone

    def call(self, method: str, path: str, *, json: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        """Send a request and return the envelope's ``data``; raise on a failed request."""
        resp = self.http.request(method, path, json=json, params=params)
        return self.unwrap(resp)[2]

    def unwrap(self, resp: requests.Response) -> tuple[int, str, Any]:
        """(replyCode, replyText, data) of a successful reply; typed errors otherwise.

        Every text taken from the reply is redacted with the request's own credential
        headers: a server may echo them (a WSSE digest and nonce, a bearer token).
        """
        try:
            body = jsoncodec.loads(resp.content)
            code, text = body["replyCode"], str(body.get("replyText") or "")
            code = int(code)
        except (ValueError, KeyError, TypeError):
            message, hint = fit(
                f"Emarsys at {host_of(resp.url)} answered {self._where(resp)} with "
                "something that is not an Emarsys reply: {detail}",
                "a proxy, firewall or maintenance page may stand between magsync and "
                "Emarsys; check emarsys.api_url", detail=self.http.describe(resp))
            raise FatalRemoteError(message, service=SERVICE, status=resp.status_code,
                                   hint=hint) from None
        text = self.http.redact(text, resp.request.headers)
        if resp.status_code == 401:
            raise self._auth_error(resp, text)
        if resp.status_code == 403:
            message, hint = fit(
                f"the Emarsys API user lacks a permission for {self._where(resp)}: "
                "{detail}", "grant the API user access to fields, contacts, contact lists "
                "and exports in Emarsys > Management > Security Settings", detail=text)
            raise AuthError(message, service=SERVICE, status=403, code=code, hint=hint)
        if code != 0 or resp.status_code >= 400:
            message, _ = fit(
                f"Emarsys at {host_of(resp.url)} refused {self._where(resp)}: HTTP "
                f"{resp.status_code}, replyCode {code}: {{detail}}", None, detail=text)
            raise EmarsysApiError(message, status=resp.status_code, reply_code=code,
                                  reply_text=text)
        return code, text, body.get("data")

    def _auth_error(self, resp: requests.Response, text: str) -> AuthError:
        if self.auth_method == "oauth2":
            hint = ("check emarsys.auth.client_id/client_secret and that api_url points "
                    "at the /api/v3 endpoint")
        else:
            hint = ("check emarsys.auth.username and secret (the API user, not a UI login) "
                    "and that this machine's clock is right (WSSE allows 5 minutes)")
        message, tip = fit(f"Emarsys refused the credentials (auth method "
                           f"{self.auth_method}): {{detail}}", hint, detail=text)
        return AuthError(message, service=SERVICE, status=401, hint=tip)

    def _where(self, resp: requests.Response) -> str:
        """``METHOD /path`` below the API root, redacted."""
        url = resp.request.url or ""
        path = url.replace(self.http.base_url, "", 1).split("?")[0] or url
        return self.http.redact(clip(f"{resp.request.method} {path}", 80),
                                resp.request.headers)

    def memo(self, key: str, load: Callable[[], T]) -> T:
        """``load()`` once per client (and its ``with_retry`` clones), then cached."""
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]
        value = load()
        with self._memo_lock:
            return self._memo.setdefault(key, value)

    def forget(self, key: str) -> None:
        """Drop a cached value (after a change, e.g. a created field)."""
        with self._memo_lock:
            self._memo.pop(key, None)

    def remember(self, key: str, value: Any) -> None:
        """Cache ``value`` as if ``memo(key, ...)`` had loaded it (a copy kept elsewhere,
        e.g. the state file's metadata cache)."""
        with self._memo_lock:
            self._memo[key] = value

    def remembered(self) -> dict[str, Any]:
        """What the client has cached, by key (a copy of the mapping)."""
        with self._memo_lock:
            return dict(self._memo)

    def forget_all(self) -> None:
        """Drop everything cached: the next reads ask Emarsys."""
        with self._memo_lock:
            self._memo.clear()

    def close(self) -> None:
        """Close the connections (the token endpoint's too)."""
        self.http.close()
        closer = getattr(self.http.auth, "close", None)
        if callable(closer):
            closer()
