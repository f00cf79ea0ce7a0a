"""Emarsys authentication as ``requests`` auth objects, run afresh on every attempt.

WSSE (``/api/v2``) signs each request with a new nonce and timestamp; a replayed header
is refused, which is why ``HttpClient`` calls the auth per attempt. OAuth 2.0 client
credentials (``/api/v3``) fetch a bearer token, cache it, refresh it a minute before it
expires, and once more when the API answers 401 (the token may have been revoked early).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets as _secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import requests
from requests.auth import AuthBase

from magsync.errors import AuthError, FatalRemoteError
from magsync.http import HttpClient
from magsync.pacing import DEFAULT_RETRY, RetryPolicy
from magsync.util.redact import add_secrets

REFRESH_MARGIN = 60.0  # seconds before expiry a token is replaced
DEFAULT_LIFETIME = 3600.0  # when the token endpoint does not say
_UNSENDABLE = re.compile(r"[\s\x00-\x1f\x7f]")


def wsse_digest(nonce: str, created: str, secret: str) -> str:
    """base64 of the *hex* sha1 of nonce + created + secret, as Emarsys computes it."""
    hex_sha1 = hashlib.sha1((nonce + created + secret).encode("utf-8")).hexdigest()
    return base64.b64encode(hex_sha1.encode("ascii")).decode("ascii")


def build_wsse_header(username: str, secret: str, nonce: str, created: str) -> str:
    """The ``X-WSSE`` header value for one request."""
    digest = wsse_digest(nonce, created, secret)
    return (f'UsernameToken Username="{username}", PasswordDigest="{digest}", '
            f'Nonce="{nonce}", Created="{created}"')


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class WsseAuth(AuthBase):
    """Emarsys WSSE: a new nonce and Created timestamp on every call."""

    def __init__(self, username: str, secret: str, *,
                 now: Callable[[], datetime] = _utc_now,
                 make_nonce: Callable[[], str] = lambda: _secrets.token_hex(16)) -> None:
        self.username = username
        self._secret = secret
        self._now = now
        self._make_nonce = make_nonce

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        created = self._now().astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        r.headers["X-WSSE"] = build_wsse_header(self.username, self._secret,
                                                self._make_nonce(), created)
        return r


class OAuth2ClientCredentials(AuthBase):
    """Bearer tokens from an OAuth 2.0 client-credentials grant, cached and refreshed."""

    def __init__(self, client_id: str, client_secret: str, token_url: str, *,
                 retry: RetryPolicy = DEFAULT_RETRY, timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        raw = f"{client_id}:{client_secret}".encode()
        self._basic = "Basic " + base64.b64encode(raw).decode("ascii")
        add_secrets([self._basic, self._basic[len("Basic "):]])
        self.token_url = token_url
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0  # how many tokens were fetched (for tests and --debug)
        self._http = HttpClient("Emarsys", token_url, timeout=timeout, retry=retry,
                                secrets=(client_id, client_secret), sleep=sleep,
                                clock=clock, pool_size=2, setting="emarsys.auth.token_url")

    def token(self) -> str:
        """A token valid for at least another minute, fetched when needed."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN:
                self._token, lifetime = self._fetch()
                self._expires_at = self._clock() + lifetime
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (refused by the API) unless another thread replaced it."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        resp = self._http.request("POST", self.token_url,
                                  data={"grant_type": "client_credentials"},
                                  headers={"Authorization": self._basic})
        if resp.status_code in (400, 401, 403):
            raise AuthError(
                f"Emarsys refused the OAuth2 client credentials at {self.token_url} "
                f"({self._http.describe(resp)})",
                service="Emarsys", status=resp.status_code,
                hint="check emarsys.auth.client_id and client_secret (an API user of type "
                     "OAuth 2.0 in Emarsys > Management > Security Settings)")
        try:
            payload = resp.json()
            token = str(payload["access_token"])
            lifetime = float(payload.get("expires_in") or DEFAULT_LIFETIME)
        except (ValueError, KeyError, TypeError):
            raise FatalRemoteError(
                f"Emarsys token endpoint {self.token_url} answered without a token: "
                f"{self._http.describe(resp)}", service="Emarsys",
                status=resp.status_code) from None
        # Every token issued is a secret from now on: a server may echo it in an error.
        add_secrets([token])
        if not token or _UNSENDABLE.search(token):
            raise FatalRemoteError(
                f"Emarsys token endpoint {self.token_url} answered an access token that "
                "cannot be sent in a header (empty, or with whitespace or control "
                "characters)", service="Emarsys", status=resp.status_code)
        self.fetches += 1
        return token, lifetime

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.token()
        r.headers["Authorization"] = f"Bearer {token}"
        r.register_hook("response", functools.partial(self._retry_on_401, token))
        return r

    def _retry_on_401(self, token: str, resp: requests.Response, **kwargs: Any
                      ) -> requests.Response:
        """On a 401, fetch a new token and resend this request once."""
        if resp.status_code != 401 or resp.request is None or resp.connection is None:
            return resp
        self.invalidate(token)
        fresh = self.token()
        resp.close()  # unread: a 401's body is not worth an unbounded read
        prep = resp.request.copy()
        prep.headers["Authorization"] = f"Bearer {fresh}"
        # The adapter's send runs no hooks, so this resend cannot loop.
        retried: requests.Response = resp.connection.send(prep, **kwargs)
        retried.history.append(resp)
        retried.request = prep
        return retried

    def close(self) -> None:
        """Close the token endpoint's connections."""
        self._http.close()
