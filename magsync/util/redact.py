"""The one redaction path: every text that leaves magsync (stderr, logs, the state file,
``status``) goes through ``scrub``.

Two layers:

- **Known values**: the config's secrets, every OAuth2 access token as it arrives, and
  the credential headers of recent failed requests (WSSE digest and nonce, OAuth1
  signature, bearer tokens). Each is redacted in the forms a server or a library may echo
  it in: as is, JSON-escaped (also with ``\\/``), ``repr``-escaped (``str`` and ``bytes``),
  percent-encoded (upper- and lower-case hex, ``+`` for spaces) and HTML-escaped.
- **Credential-shaped text**: ``PasswordDigest="…"``, ``Nonce="…"``, ``oauth_signature="…"``,
  ``Bearer <long token>`` and ``Basic <base64>`` are redacted whatever their value, so a
  digest that was never registered (another process's, a library's debug line) does not
  show either.

A leaf module: it imports nothing of magsync.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
MIN_LENGTH = 3  # shorter values are not secrets worth blanking text for
RECENT_LIMIT = 256  # per-request credentials kept (oldest dropped first)

# Header values that carry a credential or a signature.
SENSITIVE_HEADERS = frozenset({"authorization", "x-wsse", "proxy-authorization", "cookie",
                               "set-cookie"})
_PARAM_NAMES = (r"PasswordDigest|Nonce|oauth_signature|oauth_nonce|oauth_token|"
                r"oauth_consumer_key|access_token|client_secret|refresh_token")
_QUOTED_PARAM = re.compile(rf'(?:{_PARAM_NAMES})="([^"]*)"')
_VALUE = r"""(?!\*\*\*)(?:\\/|[^"'\\,\s&;}])+"""  # a JSON echo may escape "/" as "\/"
_SHAPED = (
    # name=value, name="value", name=\"value\" (headers, query strings, escaped echoes)
    re.compile(rf"""(\b(?:{_PARAM_NAMES})\\*["']?\s*=\s*\\*["']?){_VALUE}"""),
    # "name": "value" (a JSON echo); a bare ``name: value`` is config talk, left alone
    re.compile(rf"""(\\*["'](?:{_PARAM_NAMES})\\*["']\s*:\s*\\*["']){_VALUE}"""),
    re.compile(r"(\bBearer\s+)(?!\*\*\*)[A-Za-z0-9\-._~+/]{16,}=*"),
    re.compile(r"(\bBasic\s+)(?!\*\*\*)[A-Za-z0-9+/]{12,}=*"),
)
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def variants(value: str) -> set[str]:
    """``value`` in every escaped form it may be echoed in."""
    forms = {value, unquote(value), html.escape(value, quote=True),
             repr(value)[1:-1], repr(value.encode("utf-8"))[2:-1]}
    for ascii_only in (True, False):
        dumped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms.update({dumped, dumped.replace("/", "\\/")})
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value)):
        forms.update({encoded, _PERCENT.sub(lambda m: m.group(0).lower(), encoded)})
    return {f for f in forms if len(f) >= MIN_LENGTH}


def credentials_in(headers: Mapping[str, str | bytes] | None) -> list[str]:
    """The credential values a request's headers carry (whole values and their parts)."""
    found: list[str] = []
    for name, raw in (headers or {}).items():
        if name.lower() not in SENSITIVE_HEADERS or not raw:
            continue
        value = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        found.append(value)
        found.extend(m.group(1) for m in _QUOTED_PARAM.finditer(value))
        scheme, _, rest = value.partition(" ")
        if scheme.lower() in ("bearer", "basic") and rest:
            found.append(rest.strip())
    return [f for f in found if f]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every value in ``secrets`` replaced by ``***``."""
    if len(text) < MIN_LENGTH:  # no form of a secret fits (an API's "OK", every reply)
        return text
    for form in _forms_of(secrets):
        text = text.replace(form, MASK)
    return text


def _forms_of(secrets: Iterable[str]) -> list[str]:
    """Every escaped form of every value in ``secrets`` long enough to be one, longest
    first: a form inside a longer one replaced first would leave the rest showing."""
    forms: set[str] = set()
    for s in secrets:
        if s and len(s) >= MIN_LENGTH:
            forms |= variants(s)
    return sorted(forms, key=len, reverse=True)


def redact_shaped(text: str) -> str:
    """``text`` with credential-shaped parameters and tokens replaced by ``***``."""
    for pattern in _SHAPED:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class Redactor:
    """The process's set of known secrets; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lasting: set[str] = set()
        self._recent: deque[str] = deque(maxlen=RECENT_LIMIT)
        self._forms: list[str] | None = []

    def add(self, secrets: Iterable[str]) -> None:
        """Secrets for the rest of this invocation (config values, access tokens)."""
        fresh = {s for s in secrets if s and len(s) >= MIN_LENGTH}
        with self._lock:
            if not fresh <= self._lasting:
                self._lasting |= fresh
                self._forms = None

    def add_recent(self, secrets: Iterable[str]) -> None:
        """Per-request credentials (a digest, a nonce): only the latest few are kept."""
        fresh = [s for s in secrets if s and len(s) >= MIN_LENGTH]
        if not fresh:
            return
        with self._lock:
            self._recent.extend(fresh)
            self._forms = None

    def reset(self) -> None:
        """Forget everything (a new invocation in the same process: tests, demo)."""
        with self._lock:
            self._lasting.clear()
            self._recent.clear()
            self._forms = []

    def forms(self) -> list[str]:
        """Every escaped form of every known secret, longest first."""
        with self._lock:
            if self._forms is None:
                self._forms = _forms_of(self._lasting | set(self._recent))
            return self._forms

    def scrub(self, text: str, extra: Iterable[str] = ()) -> str:
        """``text`` without any known secret, ``extra`` value or credential-shaped text."""
        if not text:
            return text
        if extra:
            text = redact(text, extra)
        for form in self.forms():
            if form in text:
                text = text.replace(form, MASK)
        return redact_shaped(text)


REDACTOR = Redactor()


def add_secrets(secrets: Iterable[str]) -> None:
    """Teach the process's redaction the secrets of the loaded config (and tokens)."""
    REDACTOR.add(secrets)


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """Redact every known secret (and ``extra``) from text meant for output or storage."""
    return REDACTOR.scrub(text, extra)
