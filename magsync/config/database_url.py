"""``magento.database`` settings and the ``mysql://`` URL: parsed, validated, redacted.

No driver needed here, so the config loader can validate without PyMySQL installed.
Messages never quote the URL: it carries the password.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

DEFAULT_PORT = 3306
_PREFIX = re.compile(r"^[A-Za-z0-9_]*$")
_URL_OPTIONS = ("ssl", "ssl_ca", "unix_socket")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class DatabaseSettings:
    """``magento.database``: where the database is and what magsync may do there."""

    url: str = field(repr=False)  # a secret as a whole: it carries the password
    table_prefix: str = ""
    write_optin: bool = False
    timeout: float = 30.0


@dataclass(frozen=True)
class DatabaseTarget:
    """A parsed ``mysql://`` URL."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    ssl: bool = False
    ssl_ca: str | None = None
    unix_socket: str | None = None

    @property
    def where(self) -> str:
        """The server as messages name it: host and port, or the socket path."""
        if self.unix_socket:
            return f"socket {self.unix_socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def quote_password(value: str) -> str:
    """``value`` percent-encoded for the password part of a ``mysql://`` URL."""
    return quote(value, safe="")


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (no name is resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_url(url: str) -> DatabaseTarget:
    """``mysql://user:password@host:port/database?ssl=true`` (or ``?unix_socket=/path``).

    Raises ``ValueError`` with a message that never quotes the URL (it holds a secret).
    """
    parts = urlsplit(url.strip())
    if parts.scheme != "mysql":
        raise ValueError("must start with mysql://")
    if parts.fragment:
        raise ValueError("has a '#': percent-encode it in the password as %23")
    options = _url_options(parts.query)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("has an invalid port (or a '/' or '?' in the password: "
                         "percent-encode it, as %2F and %3F)") from None
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError("must name the database: mysql://user:password@host:port/DATABASE")
    if not parts.username:
        raise ValueError("must name the user: mysql://USER:password@host:port/database")
    target = DatabaseTarget(host=parts.hostname or "", port=port,
                            user=unquote(parts.username),
                            password=unquote(parts.password or ""), database=database,
                            ssl=_flag(options.get("ssl", "false")),
                            ssl_ca=options.get("ssl_ca"),
                            unix_socket=options.get("unix_socket"))
    _check_transport(target)
    return target


def _url_options(query: str) -> dict[str, str]:
    try:
        raw = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError("has a malformed query string") from None
    unknown = sorted(set(raw) - set(_URL_OPTIONS))
    if unknown:
        raise ValueError(f"has unknown option(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(_URL_OPTIONS)})")
    return {key: values[-1] for key, values in raw.items()}


def _flag(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("ssl must be true or false")


def _check_transport(target: DatabaseTarget) -> None:
    """Credentials never travel unencrypted: TLS unless loopback or a unix socket."""
    if target.ssl_ca and not target.ssl:
        raise ValueError("ssl_ca needs ssl=true")
    if target.unix_socket:
        if not target.unix_socket.startswith("/"):
            raise ValueError("unix_socket must be an absolute path")
        return
    if not target.host:
        raise ValueError("must name the host (or give ?unix_socket=/path)")
    if not target.ssl and not is_loopback(target.host):
        raise ValueError(f"needs ?ssl=true for host {target.host}: only loopback hosts "
                         "and unix sockets may be used without TLS")


def validate_settings(settings: DatabaseSettings) -> list[str]:
    """Every problem with ``settings``, each as ``key: message`` (never quoting the URL)."""
    problems = []
    try:
        parse_url(settings.url)
    except ValueError as exc:
        problems.append(f"url: {exc}")
    if not _PREFIX.match(settings.table_prefix):
        problems.append("table_prefix: may contain only letters, digits and '_'")
    if not 0 < settings.timeout <= 3600:
        problems.append("timeout: must be between 0 and 3600 seconds")
    return problems


def settings_secrets(settings: DatabaseSettings) -> list[str]:
    """The values to redact from output: the URL, and the password as written and decoded."""
    try:
        password = parse_url(settings.url).password
    except ValueError:
        password = ""
    return [s for s in (settings.url, password, quote_password(password)) if s]
