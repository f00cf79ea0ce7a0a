"""Magento's MySQL/MariaDB database (``subscribers: database``): the connection.

One ``Database`` holds one PyMySQL connection (opened on first use, reopened after a
lost connection) and runs each statement with HTTP's retry policy: a lost or refused
connection is retried with backoff within the budget, then raised as ``RetriableError``;
refused credentials are ``AuthError`` at once. Messages name the host, never the URL or
the password. PyMySQL is an optional extra, imported only when a database is used.
Settings and URL parsing live in ``database_url`` (re-exported here).
"""

from __future__ import annotations

import contextlib
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from magsync.config.database_url import (
    DatabaseSettings,
    DatabaseTarget,
    is_loopback,
    parse_url,
    quote_password,
    settings_secrets,
    validate_settings,
)
from magsync.errors import AuthError, ConfigError, FatalRemoteError, RetriableError
from magsync.http import redact
from magsync.pacing import DEFAULT_RETRY, RetryPolicy
from magsync.util.logs import add_secrets

if TYPE_CHECKING:
    from pymysql.connections import Connection

__all__ = ["DRIVER_MISSING", "SERVICE", "Database", "DatabaseSettings", "DatabaseStats",
           "DatabaseTarget", "is_loopback", "load_driver", "parse_url", "quote_password",
           "settings_secrets", "validate_settings"]

SERVICE = "Magento database"
DRIVER_MISSING = "subscribers: database needs the PyMySQL driver: pip install 'magsync[mysql]'"
# Errors after which a new connection may well succeed: refused or lost connections,
# a server shutting down or full, a killed session, lock timeouts and deadlocks.
RETRY_CODES = frozenset({1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055, 4031})
# The server refused the account, the database or a table/column to this user.
AUTH_CODES = frozenset({1044, 1045, 1049, 1142, 1143, 1227, 1698})
T = TypeVar("T")



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
                # rowcount = rows matched, not changed: re-applying an opt-out that is
                # already in place (same second) still finds its row
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
                if self.target.ssl:
                    self._require_tls(cur)
        except BaseException:
            # never kept, so no statement ever runs in the server's zone
            with contextlib.suppress(self._driver.err.Error, OSError):
                conn.close()
            raise
        self._conn = conn
        return conn

    def _require_tls(self, cur: Any) -> None:
        # Older PyMySQL releases fall back to plain text when the server offers no TLS
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
        if not row or not row[1]:
            raise FatalRemoteError(self._describe("the connection is not encrypted although "
                                                  "the URL says ssl=true"), service=SERVICE,
                                   hint="enable TLS on the server (or connect over loopback "
                                        "or a unix socket without ssl=true)")

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
        if isinstance(getattr(exc, "original_exception", None), ssl.SSLCertVerificationError):
            return FatalRemoteError(self._describe(text, code), service=SERVICE, code=code,
                                    hint="the server's TLS certificate is not trusted or names "
                                         "another host: give its CA as ?ssl_ca=/path/ca.pem")
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
