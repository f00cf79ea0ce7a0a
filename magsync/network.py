"""Network failures as one short line a person can read (SPEC 1).

``classify`` turns what ``requests`` raised into what happened, in words (name not
resolved, connection refused, TLS certificate rejected, timed out, connection dropped),
and whether retrying can help: a host name that does not exist and a rejected TLS
certificate fail at once; a temporary resolver failure, a refused or dropped connection
and a timeout are retried. ``fit`` keeps an error's line (message and hint) under the
length cron mails and log greps can take.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

LINE_LIMIT = 280  # characters of an error's message and hint ("magsync: error: " + this < 300)
_NOT_FOUND = {getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, n)}
_TLS_HINT = ("the server's certificate is not trusted here: fix its certificate chain, or "
             "point REQUESTS_CA_BUNDLE at your CA bundle")


@dataclass(frozen=True)
class Failure:
    """What went wrong on the wire, and whether a retry may help."""

    what: str
    retry: bool
    hint: str = ""


def host_of(url: str) -> str:
    """``host[:port]`` of ``url``, without any user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def where(method: str, url: str, limit: int = 60) -> str:
    """``METHOD /path`` (no query string: it may be long, or carry a key), clipped."""
    return clip(f"{method} {urlsplit(url).path or '/'}", limit)


def clip(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: max(0, limit - 1)].rstrip() + "…"


def fit(message: str, hint: str | None, detail: str = "", limit: int = LINE_LIMIT
        ) -> tuple[str, str | None]:
    """(message, hint) whose ``message (hint: hint)`` line is at most ``limit``
    characters; ``{detail}`` in ``message`` (a body preview) is shortened first."""
    hint = clip(hint, 170) if hint else None
    fixed = len(message.replace("{detail}", "")) + (len(hint) + 9 if hint else 0)
    room = max(0, limit - fixed)
    text = message.replace("{detail}", clip(detail, room) if room >= 12 else "")
    text = clip(text, limit - (len(hint) + 9 if hint else 0))
    return text, hint


def classify(exc: BaseException, host: str) -> Failure:
    """What ``exc`` (raised by ``requests`` for one attempt) means."""
    chain = list(_causes(exc))
    if any(isinstance(e, (requests.exceptions.SSLError, ssl.SSLError)) for e in chain):
        return _tls_failure(chain)
    gai = next((e for e in chain if isinstance(e, socket.gaierror)), None)
    if gai is not None:
        if gai.errno in _NOT_FOUND or _reserved_invalid(host):
            return Failure("name not resolved (no such host)", False,
                           "check the host name in the URL")
        return Failure("name not resolved (temporary resolver failure)", True)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return Failure("connection refused", True, "check the host and port in the URL, "
                                                   "and that the service runs")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Failure("timed out connecting", True)
    if isinstance(exc, requests.Timeout) or any(
            isinstance(e, (TimeoutError, urllib3.exceptions.TimeoutError)) for e in chain):
        return Failure("timed out waiting for the reply", True)
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return Failure("connection dropped", True)
    return Failure(f"request failed ({type(exc).__name__})", False)


def _tls_failure(chain: list[BaseException]) -> Failure:
    verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if verify is not None:
        reason = str(getattr(verify, "verify_message", "") or "").strip()
        what = f"TLS certificate rejected ({reason})" if reason else \
            "TLS certificate rejected"
        return Failure(clip(what, 110), False, _TLS_HINT)
    reason = next((str(getattr(e, "reason", "") or "") for e in chain
                   if isinstance(e, ssl.SSLError) and getattr(e, "reason", None)), "")
    return Failure(clip(f"TLS handshake failed ({reason or 'no details'})", 110), False,
                   "does the URL's host speak HTTPS on that port?")


def _reserved_invalid(host: str) -> bool:
    """Names under ``.invalid`` never exist (RFC 6761), whatever a resolver answered."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower().rstrip(".").endswith(".invalid")


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (causes, contexts, urllib3's ``reason``, args)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None),
                    *(a for a in e.args if isinstance(a, BaseException))):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return seen
