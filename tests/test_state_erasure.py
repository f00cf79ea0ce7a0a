"""Erasure at the state file's level: every row about a person removed, their key and
emails scrubbed from the run history, and no byte of them left in the file or its WAL,
even in a file written before freed rows were zeroed (it is vacuumed once)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from magsync.model import ContactRecord, MirrorRow
from magsync.state import StateStore
from magsync.state.schema import MIGRATIONS, split_sql

OLD = "old.address@example.com"
NEW = "a.much.newer.address@example.com"


def person(email: str) -> ContactRecord:
    return ContactRecord(key="c:7", customer_id=7, subscriber_id=70, email=email,
                         sent={"3": email, "2": "Doe", "31": 1})


def file_bytes(path: Path) -> bytes:
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def fill(store: StateStore) -> None:
    """A person whose email changed once, with a mirror row, a queue row, a report and a
    run message naming them, beside another person."""
    store.save_contacts([person(OLD)])
    store.save_contacts([person(NEW)])
    store.save_contacts([ContactRecord(key="c:70", customer_id=70, email="other@example.com",
                                       sent={"3": "other@example.com"})])
    store.upsert_mirror([MirrorRow(70, 7, NEW, 1, 1, 1)])
    store.enqueue("c:7", NEW, "2007: bad date", max_attempts=10)
    store.add_reports(None, [("ambiguous_email", "c:7", f"email {NEW} matches 2 contacts")])
    run = store.start_run("sync-realtime")
    store.finish_run(run, outcome="partial", exit_code=1, counts={},
                     message=f"ambiguous_email c:7: email {NEW.upper()} matches; c:70 ok")


def test_erasing_removes_every_row_and_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        fill(store)

        assert store.erase_people(["c:7"]) == 1

        assert store.get_contact("c:7") is None and store.get_contact("c:70") is not None
        assert store.mirror_get(70) is None
        assert store.queue_items(kind=None) == [] and store.reports() == []
        (run,) = store.recent_runs()
        assert run.message == "ambiguous_email [erased]: email [erased] matches; c:70 ok"
        assert store.deletion_counts()["erased"] == 1
        data = file_bytes(path)
        assert OLD.encode() not in data and NEW.encode() not in data
        assert b"other@example.com" in data


def test_a_file_written_without_secure_delete_is_vacuumed_at_its_first_erasure(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)  # a state file of schema 2
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA secure_delete=OFF")  # as an older magsync on another build
    for script in MIGRATIONS[:2]:
        for statement in split_sql(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    # the person's row is rewritten with a longer email: the old one stays in free space
    for key, email in (("c:7", OLD), ("c:8", "other@example.com"), ("c:7", NEW)):
        conn.execute("INSERT OR REPLACE INTO contacts (key, customer_id, email, sent, "
                     "updated_at) VALUES (?, ?, ?, ?, 'x')",
                     (key, int(key[2:]), email, f'{{"3":"{email}"}}'))
    conn.close()
    assert OLD.encode() in path.read_bytes()

    with StateStore.open(path) as store:  # migrated: the file needs a vacuum
        assert store.get_meta("erase_needs_vacuum") == "1"
        store.erase_people(["c:7"])
        assert store.get_meta("erase_needs_vacuum") is None

    assert OLD.encode() not in file_bytes(path) and NEW.encode() not in file_bytes(path)


def test_a_new_file_needs_no_vacuum(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.get_meta("erase_needs_vacuum") is None
