"""What the config allows in URLs and secrets: a small registry every section reads
through, so a new URL or secret needs one ``register_url`` line, not new checks.

- **URLs** (SPEC 2): every registered URL must use one of its ``schemes`` (``https`` by
  default); ``http`` is allowed only for a loopback host (``127.0.0.0/8``, ``::1``,
  ``localhost``): credentials never travel unencrypted. A rule may add its own check (the
  database URL's ``?ssl=true`` for any host but loopback) and may make the whole URL a
  secret (never printed, redacted everywhere; its password and path are redacted too).
- **Secrets**: no surrounding whitespace and no control character (a stray ``\\r`` from a
  Windows editor would otherwise reach an HTTP header); a problem names the key, never
  the value.

Paths are dotted config keys; ``*`` matches one key (``monitoring.ping_urls.*``). A
section reads a URL with ``read_url(r, raw, "url", "magento.database")`` (or
``read_secret_url`` for a secret one); the later URLs register as::

    register_url("magento.database.url", schemes=("mysql",), loopback_schemes=(),
                 secret=True, check=require_query_flag("ssl", unless=("unix_socket",)))
    register_url("monitoring.ping_urls.*", secret=True)

``iter_secrets`` finds every ``Secret`` (and ``SecretUrl``) in the loaded config by
itself, so a new secret is redacted everywhere without another list to keep.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from magsync.config.reader import Reader, Secret, secret_problem

__all__ = ["Check", "SecretUrl", "UrlRule", "is_loopback", "read_secret_url", "read_url",
           "register_url", "require_query_flag", "secret_problem", "url_problem", "url_rule"]

Check = Callable[[SplitResult, bool], str | None]  # (url, is loopback) -> problem or None


@dataclass(frozen=True)
class UrlRule:
    """How the URL at ``path`` is checked."""

    path: str
    schemes: tuple[str, ...] = ("https",)
    loopback_schemes: tuple[str, ...] = ("http",)  # also allowed for a loopback host
    secret: bool = False
    check: Check | None = None


_RULES: dict[str, UrlRule] = {}


def register_url(path: str, *, schemes: tuple[str, ...] = ("https",),
                 loopback_schemes: tuple[str, ...] = ("http",), secret: bool = False,
                 check: Check | None = None) -> UrlRule:
    """Declare a URL key (idempotent: the last registration of a path wins)."""
    rule = UrlRule(path, schemes, loopback_schemes, secret, check)
    _RULES[path] = rule
    return rule


def url_rule(path: str) -> UrlRule:
    """The rule of the URL at ``path``; an unregistered path gets the default rule."""
    if path in _RULES:
        return _RULES[path]
    for pattern, rule in _RULES.items():
        if "*" in pattern and fnmatch.fnmatchcase(path, pattern):
            return rule
    return UrlRule(path)


def is_loopback(host: str | None) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def url_problem(path: str, url: str) -> str | None:
    """Why ``url`` is not allowed at ``path`` (never quoting a secret URL), or None."""
    rule = url_rule(path)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a valid URL"
    scheme = parts.scheme.lower()
    shown = "" if rule.secret else f" (got {scheme + '://' if scheme else ''}{host or ''})"
    if not host or "://" not in url or any(c.isspace() for c in url):
        name = "http(s)" if "https" in rule.schemes else "/".join(rule.schemes)
        article = "an" if name[:1] in "aehiou" else "a"
        return f"must be {article} {name} URL" + ("" if rule.secret else f" (got {url!r})")
    loopback = is_loopback(host)
    allowed = rule.schemes + (rule.loopback_schemes if loopback else ())
    if scheme not in allowed:
        extra = (f"; {'/'.join(rule.loopback_schemes)}:// is allowed only for a loopback "
                 "host (127.0.0.1, ::1, localhost)" if rule.loopback_schemes else "")
        return (f"must start with {' or '.join(s + '://' for s in rule.schemes)}"
                f"{extra}: credentials never travel unencrypted{shown}")
    return rule.check(parts, loopback) if rule.check else None


def read_url(r: Reader, raw: dict[str, Any], key: str, path: str,
             default: str | None = None, *, required: bool = False) -> str | None:
    """The URL at ``path.key`` checked by its rule (a problem is reported on ``r``);
    for a secret URL use ``read_secret_url``."""
    where = f"{path}.{key}"
    if url_rule(where).secret:
        found = read_secret_url(r, raw, key, path, required=required)
        return found.reveal() if found else default
    text = r.string(raw, key, path, default, required=required)
    if text:
        problem = url_problem(where, text)
        if problem:
            r.problem(where, problem)
    return text


def read_secret_url(r: Reader, raw: dict[str, Any], key: str, path: str, *,
                    required: bool = False) -> SecretUrl | None:
    """A URL that is a secret as a whole (``secret=True`` in its rule)."""
    where = f"{path}.{key}"
    text = r.secret_text(raw, key, path, required=required)
    if not text:
        return None
    problem = url_problem(where, text)
    if problem:
        r.problem(where, problem)
    return SecretUrl(text)


def require_query_flag(name: str, value: str = "true", *, unless: tuple[str, ...] = ()
                       ) -> Check:
    """A check: ``?name=value`` is required for any host but loopback (or when one of
    the ``unless`` parameters is present, e.g. ``unix_socket``)."""
    def check(parts: SplitResult, loopback: bool) -> str | None:
        query = dict(parse_qsl(parts.query))
        if loopback or query.get(name, "").lower() == value or any(
                u in query for u in unless):
            return None
        return f"needs ?{name}={value} for any host but loopback (encrypted connection)"
    return check


class SecretUrl(Secret):
    """A URL that is a secret as a whole; its password and path are redacted too."""

    __slots__ = ()

    def parts(self) -> list[str]:
        """The values to redact: the URL, its password (as written and decoded), and its
        path and query (a ping URL's UUID is the secret part)."""
        url = self.reveal()
        try:
            split = urlsplit(url)
            password = split.password or ""
        except ValueError:
            return [url]
        values = [url, password, unquote(password), split.query]
        if len(split.path.strip("/")) >= 8:
            values.append(split.path)
        return [v for v in values if v]


# -- the URLs of this version -------------------------------------------------------------
register_url("magento.base_url")
register_url("emarsys.api_url")
register_url("emarsys.auth.token_url")
register_url("magento.database.url", schemes=("mysql",), loopback_schemes=(), secret=True,
             check=require_query_flag("ssl", unless=("unix_socket",)))
register_url("monitoring.ping_urls.*", secret=True)
