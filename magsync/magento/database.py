"""Magento's MySQL/MariaDB database (``subscribers: database``): settings, URL, connection.

One ``Database`` holds one PyMySQL connection (opened on first use, reopened after a
lost connection) and runs each statement with HTTP's retry policy: a lost or refused
connection is retried with backoff within the budget, then raised as ``RetriableError``;
refused credentials are ``AuthError`` at once. Messages name the host, never the URL or
the password. PyMySQL is an optional extra, imported only when a database is used.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

from magsync.errors import AuthError, ConfigError, FatalRemoteError, RetriableError
from magsync.http import DEFAULT_RETRY, RetryPolicy, redact
from magsync.logs import add_secrets

if TYPE_CHECKING:
    from pymysql.connections import Connection

SERVICE = "Magento database"
DEFAULT_PORT = 3306
DRIVER_MISSING = "subscribers: database needs the PyMySQL driver: pip install 'magsync[mysql]'"
_PREFIX = re.compile(r"^[A-Za-z0-9_]*$")
_URL_OPTIONS = ("ssl", "ssl_ca", "unix_socket")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
# Errors after which a new connection may well succeed: refused or lost connections,
# a server shutting down or full, a killed session, lock timeouts and deadlocks.
RETRY_CODES = frozenset({1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055, 4031})
# The server refused the account, the database or a table/column to this user.
AUTH_CODES = frozenset({1044, 1045, 1049, 1142, 1143, 1227, 1698})
T = TypeVar("T")


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


def load_driver() -> ModuleType:
    """The ``pymysql`` module, or a ``ConfigError`` saying how to install it."""
    try:
        import pymysql
    except ImportError:
        raise ConfigError(DRIVER_MISSING) from None
    return pymysql


@dataclass
class DatabaseStats:
    """What a ``Database`` did: connections opened and statements sent (retries too)."""

    connects: int = 0
    queries: int = 0
    retries: int = 0


class Database:
    """A retrying connection to Magento's database; one statement at a time (locked)."""

    def __init__(self, settings: DatabaseSettings, *, retry: RetryPolicy = DEFAULT_RETRY,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        problems = validate_settings(settings)
        if problems:
            raise ConfigError("magento.database is invalid",
                              [f"magento.database.{p}" for p in problems])
        self.settings = settings
        self.target = parse_url(settings.url)
        self.secrets = settings_secrets(settings)
        add_secrets(self.secrets)
        self.retry = retry
        self.stats = DatabaseStats()
        self._driver = load_driver()
        self._sleep, self._clock = sleep, clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._conn: Connection[Any] | None = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def table(self, name: str) -> str:
        """``name`` with the table prefix, quoted as an SQL identifier."""
        return f"`{self.settings.table_prefix}{name}`"

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of one SELECT, retried on a lost connection."""
        def work(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, _params(args))
            return list(cur.fetchall())
        return self._run(work)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement (autocommitted); the rows it matched."""
        return self._run(lambda cur: int(cur.execute(sql, _params(args))))

    def connect(self) -> None:
        """Open the connection now (``check``), with the same retries as a statement."""
        self._run(lambda cur: None, statement=False)

    def close(self) -> None:
        """Close the connection, if one is open."""
        with self._lock:
            self._drop()

    def _run(self, work: Callable[[Any], T], *, statement: bool = True) -> T:
        with self._lock:
            start, attempt, slept = self._clock(), 0, 0.0
            while True:
                attempt += 1
                try:
                    return self._attempt(work, statement)
                except RetriableError as exc:
                    wait = self.retry.backoff(attempt, self._rng)
                    spent = max(self._clock() - start, slept)
                    if self.retry.budget <= 0 or spent + wait > self.retry.budget:
                        raise self._gave_up(exc, attempt, spent) from exc
                self.stats.retries += 1
                self._sleep(wait)
                slept += wait

    def _attempt(self, work: Callable[[Any], T], statement: bool) -> T:
        driver = self._driver
        try:
            conn = self._conn or self._open()
            with conn.cursor() as cur:
                self.stats.queries += statement
                return work(cur)
        except (driver.err.OperationalError, driver.err.InterfaceError) as exc:
            error = self._translate(exc)
            if isinstance(error, RetriableError):
                self._drop()  # its state is unknown: the next attempt opens a new one
            raise error from exc
        except driver.err.MySQLError as exc:
            raise self._translate(exc) from exc

    def _open(self) -> Connection[Any]:
        t, driver = self.target, self._driver
        try:
            conn = driver.connect(
                host=t.host or None, port=t.port, user=t.user, password=t.password,
                database=t.database, unix_socket=t.unix_socket, ssl=self._tls(),
                connect_timeout=self.settings.timeout, read_timeout=self.settings.timeout,
                write_timeout=self.settings.timeout, charset="utf8mb4", autocommit=True,
                client_flag=driver.constants.CLIENT.FOUND_ROWS)
        except RuntimeError as exc:  # PyMySQL's "cryptography is required" for sha256 auth
            raise FatalRemoteError(self._describe(str(exc)), service=SERVICE,
                                   hint="connect with ?ssl=true or ?unix_socket=/path, or "
                                        "pip install cryptography") from None
        self.stats.connects += 1
        try:
            with conn.cursor() as cur:
                # Magento's own connections do this: change_status_at is written and
                # compared in UTC whatever the server's default zone.
                cur.execute("SET time_zone = '+00:00'")
        except BaseException:
            conn.close()  # never kept, so no statement ever runs in the server's zone
            raise
        self._conn = conn
        return conn

    def _tls(self) -> ssl.SSLContext | None:
        if not self.target.ssl:
            return None
        return ssl.create_default_context(cafile=self.target.ssl_ca)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # a lost connection is already closed (PyMySQL says so with an error)
            with contextlib.suppress(self._driver.err.Error, OSError):
                conn.close()

    def _translate(self, exc: Exception) -> RetriableError | FatalRemoteError:
        """The driver's error as magsync's, by MySQL error number."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        text = str(exc.args[1]) if len(exc.args) > 1 else type(exc).__name__
        if isinstance(exc, self._driver.err.InterfaceError) or code in RETRY_CODES:
            return RetriableError(self._describe(text or "connection closed", code),
                                  service=SERVICE, code=code)
        message, hint = self._describe(text, code), _hint(code, self.settings)
        if code in AUTH_CODES:
            return AuthError(message, service=SERVICE, code=code, hint=hint)
        return FatalRemoteError(message, service=SERVICE, code=code, hint=hint)

    def _describe(self, text: str, code: int = 0) -> str:
        number = f" (MySQL error {code})" if code else ""
        return redact(f"{SERVICE} at {self.target.where}: {text}{number}", self.secrets)

    def _gave_up(self, exc: RetriableError, attempts: int, spent: float) -> RetriableError:
        noun = "attempt" if attempts == 1 else "attempts"
        return RetriableError(f"{exc.message}; gave up after {attempts} {noun} in "
                              f"{spent:.0f} s", service=SERVICE, code=exc.code,
                              hint="the database seems unreachable or overloaded; the next "
                                   "run will try again")


def _params(args: Sequence[Any]) -> tuple[Any, ...] | None:
    # PyMySQL %-formats the statement whenever args is not None, even when empty
    return tuple(args) or None


def _hint(code: int, settings: DatabaseSettings) -> str | None:
    prefix = f"magento.database.table_prefix is {settings.table_prefix!r}"
    if code in (1045, 1698):
        return "check the user and password in magento.database.url"
    if code in (1044, 1049):
        return "check the database name in magento.database.url and the user's grants"
    if code == 1142:
        return (f"the table may not exist ({prefix}) or the user lacks the grant: GRANT "
                "SELECT ON <db>.newsletter_subscriber and <db>.store (SPEC section 8)")
    if code == 1143:
        return ("write_optin needs GRANT UPDATE (subscriber_status, change_status_at) ON "
                "<db>.newsletter_subscriber, or set write_optin: false")
    if code == 1146:
        return f"is this Magento's database, and is the prefix right? ({prefix})"
    if code == 1054:
        return "the table is not Magento 2's newsletter_subscriber/store"
    return None
