"""A throwaway MariaDB server with Magento's two subscriber tables, for tests and benches.

``start_mariadb()`` initialises a data directory in a temporary folder, starts ``mariadbd``
in its own process group on a free loopback port and a unix socket there, with a
non-UTC default zone (``+02:00``) so that a missing ``SET time_zone`` shows, and real
grants (never ``--skip-grant-tables``). It creates database ``magento`` and, with table
prefix ``mg_``, database ``magento_mg``, and the users below. No system service is used.

Without the server binaries, ``mariadb_session()`` skips the tests that need it (it
names the missing binary); under ``CI=true`` it fails them instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from magsync.sandbox.magento.records import Subscriber

SERVER_NAMES = ("mariadbd", "mysqld")
INSTALL_NAMES = ("mariadb-install-db", "mysql_install_db")
SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/usr/libexec")
SERVER_ZONE = "+02:00"
READY_TIMEOUT = 60.0
DATABASE, PREFIXED_DATABASE, PREFIX = "magento", "magento_mg", "mg_"
READER, WRITER, POWER, PREFIXED, SPECIAL = "reader", "writer", "power", "prefixed", "special"
SPECIAL_PASSWORD = "p@ss:w/o#rd%1 ?"  # every character a URL gives meaning to
STORES = [(0, "admin", 0, 0, "Admin", 0, 1), (1, "default", 1, 1, "Default Store View", 0, 1),
          (2, "second", 2, 2, "Second Store View", 1, 1)]

# Magento 2.4's columns and indexes for the two tables (db_schema.xml of Magento_Store and
# Magento_Newsletter), foreign key included.
_SCHEMA = [
    """CREATE TABLE `{p}store` (
        store_id smallint unsigned NOT NULL AUTO_INCREMENT,
        code varchar(32) DEFAULT NULL,
        website_id smallint unsigned NOT NULL DEFAULT 0,
        group_id smallint unsigned NOT NULL DEFAULT 0,
        name varchar(255) NOT NULL,
        sort_order smallint unsigned NOT NULL DEFAULT 0,
        is_active smallint unsigned NOT NULL DEFAULT 0,
        PRIMARY KEY (store_id), UNIQUE KEY STORE_CODE (code),
        KEY STORE_WEBSITE_ID (website_id), KEY STORE_IS_ACTIVE_SORT_ORDER (is_active, sort_order),
        KEY STORE_GROUP_ID (group_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_general_ci""",
    """CREATE TABLE `{p}newsletter_subscriber` (
        subscriber_id int unsigned NOT NULL AUTO_INCREMENT,
        store_id smallint unsigned DEFAULT 0,
        change_status_at timestamp NULL DEFAULT NULL,
        customer_id int unsigned NOT NULL DEFAULT 0,
        subscriber_email varchar(150) DEFAULT NULL,
        subscriber_status int NOT NULL DEFAULT 0,
        subscriber_confirm_code varchar(32) DEFAULT 'NULL',
        PRIMARY KEY (subscriber_id),
        KEY NEWSLETTER_SUBSCRIBER_CUSTOMER_ID (customer_id),
        KEY NEWSLETTER_SUBSCRIBER_STORE_ID (store_id),
        KEY NEWSLETTER_SUBSCRIBER_SUBSCRIBER_EMAIL (subscriber_email),
        CONSTRAINT NEWSLETTER_SUBSCRIBER_STORE_ID_STORE_STORE_ID FOREIGN KEY (store_id)
            REFERENCES `{p}store` (store_id) ON DELETE SET NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_general_ci""",
]


class ServerMissing(RuntimeError):
    """No MariaDB server or install script on this machine."""


def find_program(names: Iterable[str]) -> str | None:
    """The first of ``names`` on PATH or in the sbin/bin folders PATH may lack."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SEARCH_DIRS))
        if found:
            return found
    return None


def missing_reason() -> str | None:
    """Why no test server can start here, or None when it can."""
    if find_program(SERVER_NAMES) is None:
        return f"no MariaDB/MySQL server binary ({' or '.join(SERVER_NAMES)}) on PATH or " \
               f"in {', '.join(SEARCH_DIRS)}: apt-get install mariadb-server"
    if find_program(INSTALL_NAMES) is None:
        return f"no {' or '.join(INSTALL_NAMES)} to initialise a data directory: " \
               "apt-get install mariadb-server"
    try:
        import pymysql  # noqa: F401
    except ImportError:
        return "PyMySQL is not installed: pip install -e '.[mysql]'"
    return None


@dataclass
class MariaDB:
    """A running test server; ``url()`` builds a magsync URL for one of its users."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    passwords: dict[str, str] = field(default_factory=dict)
    tls_ca: str | None = None  # the self-signed certificate, when openssl could make one

    @property
    def socket_path(self) -> str:
        return str(self.workdir / "mysqld.sock")

    def url(self, user: str, *, database: str = DATABASE, via_socket: bool = False,
            password: str | None = None, host: str = "127.0.0.1") -> str:
        """``mysql://user:password@127.0.0.1:port/database`` (or by the unix socket)."""
        secret = quote(self.passwords[user] if password is None else password, safe="")
        if via_socket:
            return f"mysql://{user}:{secret}@localhost/{database}?unix_socket=" \
                   f"{quote(self.socket_path)}"
        return f"mysql://{user}:{secret}@{host}:{self.port}/{database}"

    def admin(self, database: str | None = None) -> Any:
        """A root connection over the socket, autocommit, its session in UTC."""
        import pymysql
        return pymysql.connect(unix_socket=self.socket_path, user="root", password="",
                               database=database, autocommit=True, charset="utf8mb4",
                               init_command="SET time_zone = '+00:00'")

    def sql(self, statement: str, args: Iterable[Any] = (), *, database: str | None = None
            ) -> list[tuple[Any, ...]]:
        """Run one statement as root (session in UTC); its rows."""
        conn = self.admin(database)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, tuple(args) or None)
                return list(cur.fetchall())
        finally:
            conn.close()


def start_mariadb(workdir: Path) -> MariaDB:
    """Initialise, start and set up a server in ``workdir``; stop it with ``stop_mariadb``."""
    reason = missing_reason()
    if reason:
        raise ServerMissing(reason)
    server = MariaDB(workdir)
    _install(workdir)
    try:
        _start(server)
        _wait_ready(server)
        setup_magento(server)
    except BaseException:
        stop_mariadb(server)
        raise
    return server


def stop_mariadb(server: MariaDB) -> None:
    """Stop the server's whole process group (TERM, then KILL after 30 s)."""
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextmanager
def running_mariadb() -> Iterator[MariaDB]:
    """A server in a fresh temporary folder, stopped and removed afterwards."""
    # a short path: a unix socket's path may not exceed ~107 bytes
    workdir = Path(tempfile.mkdtemp(prefix="magsync-mariadb-"))
    server = None
    try:
        server = start_mariadb(workdir)
        yield server
    finally:
        if server is not None:
            stop_mariadb(server)
        shutil.rmtree(workdir, ignore_errors=True)


def require_mariadb() -> None:
    """Skip the calling test when no server can start here; under ``CI=true`` fail it."""
    import pytest
    reason = missing_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true needs a MariaDB test server: {reason}")
        pytest.skip(reason)


def mariadb_session() -> Iterator[MariaDB]:
    """The body of a session-scoped fixture: a running server, or skip (fail under CI).

    ``@pytest.fixture(scope="session") def mariadb(): yield from mariadb_session()``
    """
    require_mariadb()
    with running_mariadb() as server:
        yield server


def _install(workdir: Path) -> None:
    installer = find_program(INSTALL_NAMES)
    assert installer is not None
    cmd = [installer, "--no-defaults", f"--datadir={workdir / 'data'}",
           "--auth-root-authentication-method=normal", "--skip-test-db", *_as_root()]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{installer} failed ({done.returncode}): {done.stderr[-2000:]}")


def _start(server: MariaDB) -> None:
    binary = find_program(SERVER_NAMES)
    assert binary is not None
    server.port = free_port()
    w = server.workdir
    cmd = [binary, "--no-defaults", f"--datadir={w / 'data'}", f"--socket={server.socket_path}",
           f"--port={server.port}", "--bind-address=127.0.0.1", f"--pid-file={w / 'mysqld.pid'}",
           f"--log-error={w / 'error.log'}", f"--tmpdir={w}", f"--default-time-zone={SERVER_ZONE}",
           "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
           *_as_root(), *_tls_options(server)]
    # its own process group, so stopping it stops everything it started
    server.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_ready(server: MariaDB) -> None:
    import pymysql
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {server.proc.returncode}: {_log(server)}")
        try:
            server.admin().close()
            return
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd not ready after {READY_TIMEOUT:.0f} s: "
                                   f"{_log(server)}") from None
            time.sleep(0.1)


def setup_magento(server: MariaDB) -> None:
    """Both databases with Magento's tables and stores, and the test users."""
    for database, prefix in ((DATABASE, ""), (PREFIXED_DATABASE, PREFIX)):
        server.sql(f"CREATE DATABASE `{database}`")
        for statement in _SCHEMA:
            server.sql(statement.format(p=prefix), database=database)
        conn = server.admin(database)
        try:
            with conn.cursor() as cur:
                # store_id 0 is Magento's admin store; 0 would otherwise mean "next id"
                cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
                cur.executemany(f"INSERT INTO `{prefix}store` VALUES (%s,%s,%s,%s,%s,%s,%s)",
                                STORES)
        finally:
            conn.close()
    _create_users(server)


def _create_users(server: MariaDB) -> None:
    tables = [f"`{DATABASE}`.`newsletter_subscriber`", f"`{DATABASE}`.`store`"]
    grants = {
        READER: [f"SELECT ON {t}" for t in tables],
        WRITER: [*(f"SELECT ON {t}" for t in tables),
                 f"UPDATE (subscriber_status, change_status_at) ON {tables[0]}"],
        POWER: [f"ALL PRIVILEGES ON `{DATABASE}`.*"],
        PREFIXED: [f"SELECT ON `{PREFIXED_DATABASE}`.`{PREFIX}{t}`"
                   for t in ("newsletter_subscriber", "store")],
        SPECIAL: [f"SELECT ON {t}" for t in tables],
    }
    for user, privileges in grants.items():
        password = SPECIAL_PASSWORD if user == SPECIAL else f"{user}-{secrets.token_hex(6)}"
        server.passwords[user] = password
        # '%%': the statement has a parameter, so a literal % is doubled
        server.sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", [password])
        for privilege in privileges:
            server.sql(f"GRANT {privilege} TO '{user}'@'%'")


def subscriber_table(database: str = DATABASE) -> tuple[str, str]:
    """(database, table) of the subscriber table of one of the test databases."""
    prefix = PREFIX if database == PREFIXED_DATABASE else ""
    return database, f"{prefix}newsletter_subscriber"


def clear_subscribers(server: MariaDB, database: str = DATABASE) -> None:
    """Empty the subscriber table (ids start at 1 again)."""
    db, table = subscriber_table(database)
    server.sql(f"TRUNCATE TABLE `{table}`", database=db)


def load_subscribers(server: MariaDB, rows: Iterable[Subscriber], *,
                     database: str = DATABASE, chunk: int = 5000) -> int:
    """Insert sandbox ``Subscriber`` rows (``generate_shop(...).subscribers.values()``);
    ``change_status_at`` is UTC, as Magento writes it. The count inserted."""
    db, table = subscriber_table(database)
    sql = (f"INSERT INTO `{table}` (subscriber_id, store_id, change_status_at, customer_id, "
           "subscriber_email, subscriber_status, subscriber_confirm_code) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s)")
    conn = server.admin(db)  # its session is UTC: the timestamps are stored unshifted
    count = 0
    try:
        with conn.cursor() as cur:
            batch: list[tuple[Any, ...]] = []
            for s in rows:
                batch.append((s.subscriber_id, s.store_id, s.change_status_at, s.customer_id,
                              s.subscriber_email, s.subscriber_status, None))
                if len(batch) >= chunk:
                    count += cur.executemany(sql, batch) or 0
                    batch = []
            if batch:
                count += cur.executemany(sql, batch) or 0
    finally:
        conn.close()
    return count


def _tls_options(server: MariaDB) -> list[str]:
    """A self-signed certificate for localhost and 127.0.0.1, if openssl is here."""
    openssl = find_program(["openssl"])
    if openssl is None:
        return []
    cert, key = server.workdir / "cert.pem", server.workdir / "key.pem"
    done = subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-days", "2", "-subj", "/CN=localhost", "-addext",
                           "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key),
                           "-out", str(cert)], capture_output=True, check=False)
    if done.returncode != 0:
        return []
    server.tls_ca = str(cert)
    return [f"--ssl-cert={cert}", f"--ssl-key={key}"]


def _as_root() -> list[str]:
    # mariadbd refuses to run as root unless told to; the tests may run as root (CI)
    return ["--user=root"] if os.geteuid() == 0 else []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log(server: MariaDB) -> str:
    try:
        return (server.workdir / "error.log").read_text(errors="replace")[-2000:]
    except OSError:
        return "(no error log)"
