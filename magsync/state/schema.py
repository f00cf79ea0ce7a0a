"""The state file's schema: each migration takes the file one version forward."""

from __future__ import annotations

# Each entry migrates from version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL,
        started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT, exit_code INTEGER,
        counts TEXT NOT NULL DEFAULT '{}', message TEXT, pid INTEGER);
    CREATE INDEX runs_command ON runs (command, id);
    CREATE TABLE watermarks (name TEXT PRIMARY KEY, value TEXT NOT NULL,
        updated_at TEXT NOT NULL);
    CREATE TABLE checkpoints (name TEXT PRIMARY KEY, data TEXT NOT NULL,
        updated_at TEXT NOT NULL);
    CREATE TABLE contacts (
        key TEXT PRIMARY KEY, customer_id INTEGER, subscriber_id INTEGER, email TEXT,
        emarsys_id TEXT, sent TEXT NOT NULL DEFAULT '{}', lists TEXT NOT NULL DEFAULT '[]',
        updated_at TEXT NOT NULL);
    CREATE INDEX contacts_subscriber ON contacts (subscriber_id);
    CREATE INDEX contacts_email ON contacts (email);
    CREATE TABLE subscribers (
        subscriber_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL DEFAULT 0,
        email TEXT NOT NULL, status INTEGER NOT NULL, website_id INTEGER,
        store_id INTEGER, seen_at TEXT NOT NULL);
    CREATE INDEX subscribers_customer ON subscribers (customer_id);
    CREATE TABLE queue (
        key TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'sync', email TEXT,
        attempts INTEGER NOT NULL DEFAULT 1, last_error TEXT,
        queued_at TEXT NOT NULL, updated_at TEXT NOT NULL, dead INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (key, kind));
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER, kind TEXT NOT NULL,
        key TEXT, detail TEXT NOT NULL, at TEXT NOT NULL);
    CREATE INDEX reports_run ON reports (run_id);
    """,
    # 2: find guest subscribers by email (a new customer may be a guest who registered)
    """
    CREATE INDEX subscribers_email ON subscribers (email COLLATE NOCASE);
    """,
    # 3: the kinds an export completed (sync/readiness.py). A file from before this rule
    # whose export completed counts as complete for both kinds.
    """
    INSERT OR IGNORE INTO meta (key, value)
        SELECT 'export_done:customers', started FROM (
            SELECT MAX(started_at) AS started FROM runs
            WHERE command = 'export-initial' AND outcome IN ('ok', 'partial'))
        WHERE started IS NOT NULL;
    INSERT OR IGNORE INTO meta (key, value)
        SELECT 'export_done:subscribers', value FROM meta
        WHERE key = 'export_done:customers';
    """,
    # 4: deletions found in Magento (SPEC 7): the sent customer ids as a sorted stream,
    # people marked deleted, guest subscribers one complete read missed. A file that
    # already holds contacts was written without secure_delete: its first erasure
    # vacuums it, so no earlier copy of the person's data is left in free space.
    """
    CREATE INDEX contacts_customer ON contacts (customer_id);
    CREATE TABLE deletions (
        key TEXT PRIMARY KEY, mode TEXT NOT NULL, found_at TEXT NOT NULL,
        applied_at TEXT);
    CREATE TABLE deletion_suspects (
        subscriber_id INTEGER PRIMARY KEY, misses INTEGER NOT NULL,
        first_missed_at TEXT NOT NULL, website_id INTEGER);
    INSERT INTO meta (key, value) SELECT 'erase_needs_vacuum', '1'
        WHERE EXISTS (SELECT 1 FROM contacts);
    """,
    # 5: less to write per contact saved. Nothing looks contacts up by email (each save
    # moved an entry to a random place of that index: most of the pages a commit wrote);
    # only contacts with a subscriber id are looked up by it, so the others (most
    # customers) need no entry there.
    """
    DROP INDEX IF EXISTS contacts_email;
    DROP INDEX IF EXISTS contacts_subscriber;
    CREATE INDEX contacts_subscriber ON contacts (subscriber_id)
        WHERE subscriber_id IS NOT NULL;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
