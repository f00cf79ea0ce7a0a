"""Is this SQLite file magsync's, intact, and of a schema this magsync knows?

Checked on every open, before anything is written (cheap: two header fields and the table
list): the ``application_id`` magsync stamps into its files, the schema version
(``user_version``) and the tables that version has. A file of another application, one
with tables that are not magsync's, or one with a table missing is refused (exit 2) and
left as it is. ``quick_check`` reads the whole file, so only ``magsync check`` runs it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from magsync.errors import StateError
from magsync.state.schema import MIGRATIONS, SCHEMA_VERSION, split_sql

# "mags" in ASCII: the SQLite application id of every magsync state file (0x6D616773).
APPLICATION_ID = 0x6D616773

MOVE_AWAY = "point state.path (or $MAGSYNC_STATE) at another file, or move this one away"
DAMAGED_FIX = ("magsync left it as it is: restore it from a backup, or move it away and run "
               "`magsync export-initial` to start a new one")


@dataclass(frozen=True)
class FileInfo:
    """What the header and table list say about an open state file."""

    application_id: int
    version: int
    empty: bool  # no tables yet: a new file

    @property
    def needs_migration(self) -> bool:
        """A writing run would change it (new tables, or the application id stamped)."""
        return self.version < SCHEMA_VERSION or self.application_id != APPLICATION_ID

    def migration_note(self) -> str | None:
        """What the next writing run will do to it, for the read-only commands."""
        if self.empty or not self.needs_migration:
            return None
        if self.version < SCHEMA_VERSION:
            return (f"schema {self.version}: the next writing command (sync-realtime, "
                    f"export-initial, ...) migrates it to schema {SCHEMA_VERSION}")
        return ("made by an older magsync: the next writing command marks it as magsync's "
                "(SQLite application_id)")


@cache
def expected_tables(version: int) -> frozenset[str]:
    """The tables a state file of schema ``version`` has (the migrations, in memory)."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            for statement in split_sql(script):
                conn.execute(statement)
        return frozenset(_tables(conn))
    finally:
        conn.close()


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows if not r[0].startswith("sqlite_")}


def examine(conn: sqlite3.Connection, path: Path) -> FileInfo:
    """Read the header and table list; raise ``StateError`` (exit 2) for a file that is
    not magsync's, is damaged, or comes from a newer magsync. Writes nothing."""
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = _tables(conn)
    except sqlite3.OperationalError:
        raise  # locked or unreadable: the file may be fine, the caller says so
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path} is not a magsync state file ({exc})", hint=MOVE_AWAY
                         ) from None
    if app_id not in (0, APPLICATION_ID):
        raise StateError(f"{path} is not a magsync state file: it is an SQLite database of "
                         f"another application (application_id {app_id:#x})", hint=MOVE_AWAY)
    ours = app_id == APPLICATION_ID
    if version > SCHEMA_VERSION and (ours or tables & expected_tables(SCHEMA_VERSION)):
        raise StateError(f"{path} was written by a newer magsync (schema {version}, this one "
                         f"knows {SCHEMA_VERSION})",
                         hint="upgrade magsync, or use another state.path")
    expected = expected_tables(min(version, SCHEMA_VERSION))
    foreign = sorted(tables - expected)
    if foreign or (not ours and version > SCHEMA_VERSION):
        what = f"tables that are not magsync's ({', '.join(foreign[:5])})" if foreign \
            else f"user_version {version}"
        raise StateError(f"{path} is not a magsync state file: it holds {what}",
                         hint=MOVE_AWAY)
    missing = sorted(expected - tables)
    if missing and (ours or tables):
        names = ", ".join(missing)
        raise StateError(f"state file {path} is damaged: table{'s' if len(missing) > 1 else ''}"
                         f" {names} {'are' if len(missing) > 1 else 'is'} missing",
                         hint=DAMAGED_FIX)
    if missing:  # application id 0, a version, no table at all: not a magsync file
        raise StateError(f"{path} is not a magsync state file: it has user_version {version} "
                         "and none of magsync's tables", hint=MOVE_AWAY)
    return FileInfo(app_id, version, empty=not tables)


def quick_check(conn: sqlite3.Connection, path: Path, limit: int = 3) -> list[str]:
    """``PRAGMA quick_check`` (reads the whole file): at most ``limit`` findings, one line
    each; [] when the file is intact."""
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(limit) + 1})").fetchall()
    except sqlite3.OperationalError:
        raise  # locked or unreadable, not damaged
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    found = [line.strip() for r in rows for line in str(r[0]).splitlines()
             if line.strip() and not line.startswith("*** in database")]
    return [] if found == ["ok"] else found[:limit]
