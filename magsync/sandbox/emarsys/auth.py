"""Authentication and rate limiting of the sandbox Emarsys API.

WSSE (``/api/v2``): digest = base64 of the HEX sha1 of nonce + created + secret; Created
within 5 minutes of the server clock; a nonce seen in the last 10 minutes is refused.
OAuth 2.0 (``/api/v3``): client-credentials tokens with a configurable lifetime.
The rate limiter is a fixed window that also counts "early" requests: those arriving
before a reset time it announced with a 429, i.e. clients that did not wait.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

CREATED_TOLERANCE = 300.0
NONCE_MEMORY = 600.0
_WSSE_PART = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def wsse_digest(nonce: str, created: str, secret: str) -> str:
    """Emarsys's PasswordDigest: base64 of the 40-char hex sha1, not of the raw bytes."""
    hex_digest = hashlib.sha1((nonce + created + secret).encode()).hexdigest()
    return base64.b64encode(hex_digest.encode()).decode()


def wsse_header(username: str, secret: str, *, nonce: str | None = None,
                created: str | None = None) -> str:
    """A complete X-WSSE header (for tests and the demo; the client builds its own)."""
    nonce = nonce or secrets.token_hex(16)
    created = created or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = wsse_digest(nonce, created, secret)
    return (f'UsernameToken Username="{username}", PasswordDigest="{digest}", '
            f'Nonce="{nonce}", Created="{created}"')


def parse_created(text: str) -> float | None:
    """A WSSE Created value (UTC ISO 8601) as unix time, or None when unparsable."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


class WsseChecker:
    """Checks X-WSSE headers for one API user; remembers nonces for 10 minutes."""

    def __init__(self, username: str, secret: str, clock: Callable[[], float]) -> None:
        self.username, self.secret, self.clock = username, secret, clock
        self._nonces: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, header: str) -> str | None:
        """None when the header is valid, else why it is refused."""
        if not header.strip().startswith("UsernameToken"):
            return "Missing or malformed X-WSSE header"
        parts = dict(_WSSE_PART.findall(header))
        missing = {"Username", "PasswordDigest", "Nonce", "Created"} - parts.keys()
        if missing:
            return f"X-WSSE header lacks {', '.join(sorted(missing))}"
        if parts["Username"] != self.username:
            return "Unknown user"
        created = parse_created(parts["Created"])
        now = self.clock()
        if created is None or abs(now - created) > CREATED_TOLERANCE:
            return "Created is not within 5 minutes of the server time"
        expected = wsse_digest(parts["Nonce"], parts["Created"], self.secret)
        if not hmac.compare_digest(expected, parts["PasswordDigest"]):
            return "Invalid PasswordDigest"
        return self._use_nonce(parts["Nonce"], now)

    def _use_nonce(self, nonce: str, now: float) -> str | None:
        with self._lock:
            for old in [n for n, at in self._nonces.items() if now - at > NONCE_MEMORY]:
                del self._nonces[old]
            if nonce in self._nonces:
                return "Nonce already used"
            self._nonces[nonce] = now
        return None


class TokenIssuer:
    """OAuth 2.0 client-credentials tokens."""

    def __init__(self, client_id: str, client_secret: str, lifetime: float,
                 clock: Callable[[], float]) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.lifetime, self.clock = lifetime, clock
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def check_client(self, authorization: str) -> bool:
        """Whether a ``Basic`` header carries this client's id and secret."""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        cid, _, secret = decoded.partition(":")
        return hmac.compare_digest(cid, self.client_id) and \
            hmac.compare_digest(secret, self.client_secret)

    def issue(self) -> dict[str, object]:
        """A new token reply: access_token, token_type, expires_in."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = self.clock() + self.lifetime
            self.issued += 1
        return {"access_token": token, "token_type": "bearer",
                "expires_in": int(self.lifetime)}

    def check_bearer(self, authorization: str) -> str | None:
        """None when the bearer token is valid now, else why not."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "Missing bearer token"
        with self._lock:
            expires = self._tokens.get(token.strip())
        if expires is None:
            return "Unknown access token"
        if self.clock() >= expires:
            return "Access token expired"
        return None

    def expire_all(self) -> None:
        """Test helper: every token issued so far is expired from now on."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, float("-inf"))


@dataclass
class RateDecision:
    """The outcome of counting one request: allowed or not, and the headers to send."""

    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    """Fixed-window limit with forced-429 faults and an early-request counter."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._lock = threading.Lock()
        self._window_start = clock()
        self._count = 0
        self._announced_reset = float("-inf")
        self._forced: list[float] = []  # reset_in seconds of each forced 429
        self.early_requests = 0
        self.rejected = 0

    def force_429(self, n: int, reset_in: float) -> None:
        """Answer the next ``n`` requests 429 with a reset ``reset_in`` seconds ahead."""
        with self._lock:
            self._forced.extend([float(reset_in)] * n)

    def hit(self) -> RateDecision:
        """Count one request and decide."""
        with self._lock:
            now = self.clock()
            if now < self._announced_reset:
                self.early_requests += 1
            if now >= self._window_start + self.window:
                self._window_start, self._count = now, 0
            self._count += 1
            reset = self._window_start + self.window
            allowed = self._count <= self.limit
            if self._forced:
                reset, allowed = now + self._forced.pop(0), False
            if not allowed:
                # Announce a whole second a client can wait for: any request before it
                # counts as early.
                self._announced_reset = max(self._announced_reset, math.ceil(reset))
                self.rejected += 1
            remaining = max(0, self.limit - self._count) if allowed else 0
            return RateDecision(allowed, {
                "X-RateLimit-Limit": str(self.limit),
                "X-Ratelimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(reset)),
            })

    def peek(self) -> dict[str, str]:
        """The rate-limit headers as they stand, without counting a request."""
        with self._lock:
            reset = self._window_start + self.window
            return {"X-RateLimit-Limit": str(self.limit),
                    "X-Ratelimit-Remaining": str(max(0, self.limit - self._count)),
                    "X-RateLimit-Reset": str(math.ceil(reset))}

    def reset(self) -> None:
        """Start a fresh window and forget announced resets and counters."""
        with self._lock:
            self._window_start, self._count = self.clock(), 0
            self._announced_reset = float("-inf")
            self._forced.clear()
            self.early_requests = self.rejected = 0
