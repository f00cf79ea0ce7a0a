"""The one session factory: timeouts, retries, rate limiting, bounded replies, redaction.

Both remote clients (Magento, Emarsys) talk through ``HttpClient``. It retries what is
worth retrying (429, 408, 423, 5xx gateways, dropped or refused connections, timeouts, a
temporary resolver failure) within a time budget, honours
``X-RateLimit-Reset``/``Retry-After``, takes a rate-limiter token per attempt and runs
``auth`` afresh on every attempt: a WSSE header or an OAuth signature must never be
replayed, which is why urllib3-level retries stay off.

Transport rules (SPEC 3): redirects are never followed (a redirect is an error naming its
target: a custom credential header such as ``X-WSSE`` would go to the new host, and a 307
re-sends personal data); a reply is streamed and refused past ``MAX_REPLY_BYTES``, never
read whole into memory; a host name that does not exist and a rejected TLS certificate
fail at once. Every failure is one short line naming the service, the host and what
happened (``magsync.network``), with every credential the request carried redacted.
"""

from __future__ import annotations

import copy
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from magsync import __version__
from magsync.errors import ConfigError, FatalRemoteError, RetriableError
from magsync.network import Failure, classify, clip, fit, host_of, where
from magsync.pacing import (
    DEFAULT_RETRY,
    Abort,
    RateLimiter,
    RetryPolicy,
    parse_rate_limit_wait,
)
from magsync.util import jsoncodec
from magsync.util.redact import REDACTOR, credentials_in, redact

__all__ = ["DEFAULT_RETRY", "MAX_REPLY_BYTES", "Abort", "HttpClient", "RateLimiter",
           "RetryPolicy", "credentials_in", "parse_rate_limit_wait", "redact"]

RETRY_STATUSES = frozenset({408, 423, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = f"magsync/{__version__}"
BODY_PREVIEW = 200
MAX_REPLY_BYTES = 64 * 1024 * 1024  # SPEC 3: a larger reply is refused, never read whole
_ERROR_BODY_BYTES = 64 * 1024  # of a reply that is retried: only its preview is shown
_CHUNK = 64 * 1024
_TRANSIENT = (requests.ConnectionError, requests.Timeout,
              requests.exceptions.ChunkedEncodingError)


class _TooLarge(Exception):
    """A reply's body passed the cap."""


class HttpClient:
    """A retrying, rate-limited, redacting session for one remote service.

    ``setting`` names the config key of ``base_url`` (``emarsys.api_url``) for hints.
    """

    def __init__(self, service: str, base_url: str, *, auth: AuthBase | None = None,
                 timeout: float = 30.0, retry: RetryPolicy = DEFAULT_RETRY,
                 limiter: RateLimiter | None = None, secrets: Iterable[str] = (),
                 pool_size: int = 10, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, setting: str = "",
                 abort: Abort | None = None) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.retry = retry
        self.limiter = limiter
        self.secrets = tuple(s for s in secrets if s)
        self.setting = setting
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = random.Random()
        # Shared with the with_retry clones, and with the run's other client when the
        # caller passes the same one.
        self.abort = abort or Abort()
        self.session = _Session()
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
        interpret, its body read (at most ``MAX_REPLY_BYTES``, else a FatalRemoteError).
        With ``stream=True`` a 2xx reply's body is left unread for the caller, who
        streams it under its own bounds (export downloads); other replies are read as
        usual. Raises ``RetriableError`` once the budget is spent, ``FatalRemoteError``
        for a redirect, a reply too large, an unknown host or a rejected certificate.
        """
        url = self.url_for(path_or_url)
        send_headers = dict(headers or {})
        if json is not None:  # encoded once, not per attempt, with the fast encoder
            data = jsoncodec.dumps(json)
            send_headers.setdefault("Content-Type", "application/json")
        start = self._clock()
        attempt, slept = 0, 0.0
        status: int | None  # of the last answer; None when the attempt got none
        while True:
            attempt += 1
            self._take_slot()
            try:
                resp = self._send(method, url, params, data, send_headers, stream)
            except _TRANSIENT as exc:
                failure, status = self._network_failure(exc, method, url), None
                wait = self.retry.backoff(attempt, self._rng)
            else:
                if resp.status_code not in RETRY_STATUSES:
                    return resp
                failure, status = Failure(self.describe(resp), True), resp.status_code
                wait = self._wait_for(resp, attempt)
                if resp.status_code == 429 and self.limiter is not None:
                    # Every thread of this client waits, not only the one that was told.
                    self.limiter.hold(wait)
                resp.close()
            # Counting our own sleeps too keeps a stubbed clock from retrying forever.
            spent = max(self._clock() - start, slept)
            if spent + wait > self.retry.budget:
                error = self._gave_up(method, url, attempt, spent, failure, status)
                self.abort.trip(error)
                raise error
            self._pause(wait)
            slept += wait

    def _send(self, method: str, url: str, params: Any, data: Any,
              headers: dict[str, str], stream: bool) -> requests.Response:
        """One attempt: the reply with its body read (see ``request``), or an error."""
        try:
            resp = self.session.request(
                method, url, params=params, data=data, headers=dict(headers),
                auth=self.auth, timeout=(self.timeout, self.timeout), stream=True,
                allow_redirects=False)
        except _TRANSIENT:
            raise
        except (requests.RequestException, ValueError) as exc:
            raise self._local_failure(exc, method, url) from None
        if not 200 <= resp.status_code < 300:
            REDACTOR.add_recent(credentials_in(resp.request.headers))
        if resp.status_code in REDIRECT_STATUSES:
            raise self._redirected(resp)
        if stream and 200 <= resp.status_code < 300:
            return resp
        try:
            limit = _ERROR_BODY_BYTES if resp.status_code in RETRY_STATUSES else \
                MAX_REPLY_BYTES
            _read_body(resp, limit, truncate=resp.status_code in RETRY_STATUSES)
        except _TooLarge:
            resp.close()
            raise self._too_large(resp) from None
        except requests.RequestException as exc:
            resp.close()
            if isinstance(exc, _TRANSIENT):
                raise
            raise self._local_failure(exc, method, url) from None
        except BaseException:
            resp.close()
            raise
        return resp

    def _network_failure(self, exc: BaseException, method: str, url: str) -> Failure:
        """The failure of one attempt; raised at once when retrying cannot help."""
        REDACTOR.add_recent(credentials_in(getattr(exc.request, "headers", None))
                            if isinstance(exc, requests.RequestException) else ())
        failure = classify(exc, host_of(url))
        if not failure.retry:  # without the library's own (long, URL-quoting) error
            raise self._unreachable(failure, method, url) from None
        return failure

    def _local_failure(self, exc: BaseException, method: str, url: str) -> Exception:
        """A request that could not be sent at all (a bad header value, a bad URL)."""
        if isinstance(exc, requests.exceptions.InvalidHeader) or "header" in str(exc):
            return ConfigError(
                f"{self.service}: a request header holds a character HTTP forbids "
                f"({where(method, url)})",
                hint="a credential in the config holds whitespace or a line break")
        if isinstance(exc, requests.RequestException):
            return self._unreachable(classify(exc, host_of(url)), method, url)
        raise exc

    def _unreachable(self, failure: Failure, method: str, url: str) -> FatalRemoteError:
        return self._fatal(f"{self.service} at {host_of(url)}: {failure.what} "
                           f"({where(method, url)})", failure.hint)

    def _fatal(self, message: str, hint: str = "", status: int | None = None
               ) -> FatalRemoteError:
        if self.setting:
            hint = f"{hint}; check {self.setting}" if hint else f"check {self.setting}"
        text, tip = fit(self.redact(message), hint or None)
        return FatalRemoteError(text, service=self.service, status=status, hint=tip)

    def _redirected(self, resp: requests.Response) -> FatalRemoteError:
        target = self.redact(resp.headers.get("Location", "") or "(no Location)",
                             resp.request.headers)
        method = resp.request.method or "GET"
        resp.close()
        return self._fatal(
            f"{self.service} at {host_of(resp.url)} answered {where(method, resp.url)} "
            f"with a redirect (HTTP {resp.status_code}) to {clip(target, 100)}; magsync "
            "does not follow redirects", "use the final address in the config",
            status=resp.status_code)

    def _too_large(self, resp: requests.Response) -> FatalRemoteError:
        method = resp.request.method or "GET"
        return self._fatal(
            f"{self.service} at {host_of(resp.url)} sent a reply larger than "
            f"{_size(MAX_REPLY_BYTES)} to {where(method, resp.url)}; refused",
            "a proxy or a misconfigured server may answer instead of the API",
            status=resp.status_code)

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
                 failure: Failure, status: int | None) -> RetriableError:
        noun = "attempt" if attempts == 1 else "attempts"
        if status is not None:
            hint = f"{self.service} seems unavailable or overloaded; the next run will try again"
        else:
            hint = f"{failure.hint}; the next run will try again" if failure.hint else \
                "the next run will try again"
        detail = self.redact(failure.what)
        text, tip = fit(
            f"{self.service} did not answer successfully after {attempts} {noun} in "
            f"{spent:.0f} s ({host_of(url)}: {{detail}}; {where(method, url)})",
            hint, detail=detail)
        return RetriableError(text, service=self.service, status=status, hint=tip,
                              detail=detail)

    def describe(self, resp: requests.Response) -> str:
        """``HTTP <status> <first bytes of the body>``, redacted, for error messages."""
        try:
            body = resp.content[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
        except (requests.RequestException, RuntimeError):
            body = ""
        headers = resp.request.headers if resp.request is not None else None
        # Redact the whole body before cutting it: a cut must not split a secret.
        body = " ".join(self.redact(body, headers).split())[:BODY_PREVIEW]
        return f"HTTP {resp.status_code} {body}".rstrip()

    def redact(self, text: str, headers: Mapping[str, str] | None = None) -> str:
        """``text`` without any known secret, the config's or the credentials in
        ``headers`` (the request's: a server may echo them)."""
        return REDACTOR.scrub(text, [*self.secrets, *credentials_in(headers)])

    def close(self) -> None:
        """Close the pooled connections (shared with every ``with_retry`` clone)."""
        self.session.close()


class _Session(requests.Session):
    """requests' Session, reading the proxy and CA settings of the environment once per
    origin rather than on every request (each look-up scans ``os.environ`` twice: a
    tenth of a request's CPU). The environment of a run does not change under it."""

    def __init__(self) -> None:
        super().__init__()
        self._env_proxies: dict[tuple[str, str, str | None], dict[str, str]] = {}
        self._env_verify: str | None = None
        self._env_read = False

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> Any:
        """requests' own merge, with the environment's part read once per origin."""
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        parts = urlsplit(str(url))
        key = (parts.scheme, parts.netloc, no_proxy)
        env_proxies = self._env_proxies.get(key)
        if env_proxies is None:
            env_proxies = requests.utils.get_environ_proxies(str(url), no_proxy=no_proxy)
            self._env_proxies[key] = env_proxies
        if proxies is not None:
            for k, v in env_proxies.items():
                proxies.setdefault(k, v)
        if not self._env_read:
            self._env_verify = (os.environ.get("REQUESTS_CA_BUNDLE")
                                or os.environ.get("CURL_CA_BUNDLE"))
            self._env_read = True
        if verify is True or verify is None:
            verify = self._env_verify or verify
        merge = requests.sessions.merge_setting
        return {"proxies": merge(proxies, self.proxies), "stream": merge(stream, self.stream),
                "verify": merge(verify, self.verify), "cert": merge(cert, self.cert)}


def _read_body(resp: requests.Response, limit: int, *, truncate: bool) -> None:
    """Read ``resp``'s body in chunks into ``resp.content``; past ``limit`` bytes stop:
    keep the first ``limit`` (``truncate``) or raise ``_TooLarge``."""
    declared = resp.headers.get("Content-Length", "")
    if not truncate and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    for chunk in resp.iter_content(_CHUNK):
        body += chunk
        if len(body) > limit:
            if not truncate:
                raise _TooLarge
            del body[limit:]
            resp.close()  # the rest is not wanted; the connection is not reused
            break
    resp._content = bytes(body)
    resp._content_consumed = True  # type: ignore[attr-defined]


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 else f"{n} bytes"
