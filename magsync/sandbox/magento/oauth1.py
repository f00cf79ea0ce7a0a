"""OAuth 1.0a request verification as Magento's integrations do it (RFC 5849, HMAC-SHA256).

The signature is recomputed from what the server received: the method, the normalised
URL, the decoded query parameters plus the ``oauth_*`` header parameters (and a form
body, if any), with key ``consumer_secret&token_secret``. Checks run in Magento's order
and fail with its messages: required parameters, version, signature method (HTTP 400),
then timestamp and nonce (the nonce is stored even when the signature later fails, as
Magento stores it), consumer, token and signature (HTTP 401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote, unquote, urlsplit

from magsync.sandbox.magento.errors import MagentoHttpError

REQUIRED = ("oauth_consumer_key", "oauth_signature", "oauth_signature_method", "oauth_nonce",
            "oauth_timestamp", "oauth_token")
SUPPORTED_METHODS = ("HMAC-SHA256",)
_HEADER_PARAM = re.compile(r'([A-Za-z0-9_\-]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')


class OAuthRefused(MagentoHttpError):
    """Why a request was refused: HTTP status and Magento's error body."""


def percent_encode(text: str) -> str:
    """RFC 3986 encoding: everything but ALPHA / DIGIT / "-" / "." / "_" / "~"."""
    return quote(text, safe="~")


def parse_authorization(header: str) -> dict[str, str] | None:
    """The parameters of an ``Authorization: OAuth ...`` header; None if not OAuth."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "oauth":
        return None
    params = {}
    for name, quoted, bare in _HEADER_PARAM.findall(rest):
        if name != "realm":
            params[name] = unquote(quoted if quoted else bare)
    return params


def normalize_url(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, no query or fragment."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) \
        else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The RFC 5849 signature base string."""
    pairs = sorted((percent_encode(k), percent_encode(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join((method.upper(), percent_encode(normalize_url(url)),
                     percent_encode(normalized)))


def sign_hmac_sha256(base: str, consumer_secret: str, token_secret: str) -> str:
    """base64(HMAC-SHA256(key=cs&ts, base))."""
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class OAuth1Verifier:
    """Verifies requests signed for one integration (one consumer, one access token)."""

    def __init__(self, consumer_key: str, consumer_secret: str, token: str,
                 token_secret: str, *, consumer_id: int = 1, max_skew: int = 600,
                 clock: Callable[[], float] = time.time) -> None:
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.token, self.token_secret = token, token_secret
        self.consumer_id = consumer_id
        self.max_skew = max_skew
        self.clock = clock
        self._nonces: dict[str, int] = {}
        self._lock = threading.Lock()

    def verify(self, method: str, url: str, query: Iterable[tuple[str, str]],
               oauth: dict[str, str], form: Iterable[tuple[str, str]] = ()) -> None:
        """Raise ``OAuthRefused`` unless the request is correctly signed and fresh."""
        for name in REQUIRED:
            if not oauth.get(name):
                raise OAuthRefused(400, '"%fieldName" is required. Enter and try again.',
                                   {"fieldName": name})
        if oauth.get("oauth_version", "1.0") != "1.0":
            raise OAuthRefused(400, 'The "%1" Oauth version isn\'t supported.',
                               [oauth["oauth_version"]])
        if oauth["oauth_signature_method"] not in SUPPORTED_METHODS:
            raise OAuthRefused(400, "Signature method %1 is not supported",
                               [oauth["oauth_signature_method"]])
        self._check_nonce(oauth["oauth_nonce"], oauth["oauth_timestamp"])
        if not hmac.compare_digest(oauth["oauth_consumer_key"], self.consumer_key):
            raise OAuthRefused(401, "A consumer with the specified key does not exist.")
        if not hmac.compare_digest(oauth["oauth_token"], self.token):
            raise OAuthRefused(401, "The token is not valid.")
        params = [*query, *form,
                  *((k, v) for k, v in oauth.items() if k != "oauth_signature")]
        expected = sign_hmac_sha256(base_string(method, url, params), self.consumer_secret,
                                    self.token_secret)
        if not hmac.compare_digest(expected, oauth["oauth_signature"]):
            raise OAuthRefused(401, "The signature is invalid. Verify and try again.")

    def _check_nonce(self, nonce: str, timestamp: str) -> None:
        now = int(self.clock())
        try:
            stamp = int(timestamp)
        except ValueError:
            stamp = 0
        # Magento itself only refuses future stamps; a stale one is refused here too
        if stamp <= 0 or abs(stamp - now) > self.max_skew:
            raise OAuthRefused(401, "Incorrect timestamp value in the oauth_timestamp "
                                    "parameter")
        with self._lock:
            if nonce in self._nonces:
                raise OAuthRefused(401, "The nonce is already being used by the consumer "
                                        "with ID %1", [self.consumer_id])
            self._nonces[nonce] = stamp
            if len(self._nonces) > 10_000:
                self._prune(now)

    def _prune(self, now: int) -> None:
        # a nonce older than the skew window cannot be replayed anyway: its stamp fails
        horizon = now - 2 * self.max_skew
        self._nonces = {n: s for n, s in self._nonces.items() if s >= horizon}
