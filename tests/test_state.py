"""The state file (magsync.state): migrations, runs, watermarks, checkpoints, contacts,
the subscriber mirror, the failsafe queue and reports."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from magsync.errors import EXIT_CONFIG, StateError
from magsync.model import ContactRecord, MirrorRow
from magsync.state import SCHEMA_VERSION, StateStore
from magsync.state.integrity import APPLICATION_ID
from magsync.state.store import read_state

T0 = datetime(2024, 5, 1, 10, 30, 15, 123456, tzinfo=timezone.utc)
TABLES = {"meta", "runs", "watermarks", "checkpoints", "contacts", "subscribers", "queue",
          "reports", "deletions", "deletion_suspects"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state.db") as s:
        yield s


def tables_of(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        conn.close()
    return {r[0] for r in rows} - {"sqlite_sequence"}


# -- opening and migrations ------------------------------------------------------------------


def test_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with StateStore.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        journal = s._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
    assert tables_of(path) == TABLES


def test_creates_missing_directories_and_keeps_data_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    with StateStore.open(path) as s:
        s.set_meta("mapping_hash", "abc")
    with StateStore.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.get_meta("mapping_hash") == "abc"
        assert s.get_meta("nothing") is None


def test_open_without_create_and_read_state(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(StateError, match="does not exist"):
        StateStore.open(path, create=False)
    assert read_state(path, lambda s: s.schema_version) is None
    assert not path.exists()
    StateStore.open(path).close()
    assert read_state(path, lambda s: s.schema_version) == SCHEMA_VERSION


def test_not_sqlite_is_a_state_error_with_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_text("this is a text file, not a database\n" * 20)
    with pytest.raises(StateError) as info:
        StateStore.open(path)
    assert str(info.value) == (
        f"{path} is not a magsync state file (file is not a database) "
        "(hint: point state.path (or $MAGSYNC_STATE) at another file, or move this one away)")
    assert info.value.exit_code == EXIT_CONFIG
    assert path.read_text().startswith("this is a text file")  # left alone


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # magsync's, from the future
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError) as info:
        StateStore.open(path)
    assert str(info.value) == (
        f"{path} was written by a newer magsync (schema {SCHEMA_VERSION + 1}, this one knows "
        f"{SCHEMA_VERSION}) (hint: upgrade magsync, or use another state.path)")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()
    assert tables_of(path) == set()


def test_a_directory_is_not_a_state_file(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot open state file"):
        StateStore.open(tmp_path)


@pytest.mark.skipif(not Path("/proc/version").exists(), reason="needs Linux /proc")
def test_a_file_sqlite_cannot_write_is_not_called_foreign() -> None:
    # /proc/version is read-only even for root: stands for a read-only state file
    with pytest.raises(StateError) as info:
        StateStore.open("/proc/version")
    assert str(info.value).startswith("cannot use state file /proc/version: ")
    assert "permissions of the file and its directory" in str(info.value)


# -- transactions ----------------------------------------------------------------------------


def test_atomic_rolls_back_everything_on_error(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.atomic():
        store.set_watermark("customers", T0)
        with store.atomic():  # nested: joins the outer transaction
            store.set_checkpoint("export", {"last_id": 5})
        raise RuntimeError("boom")
    assert store.get_watermark("customers") is None
    assert store.get_checkpoint("export") is None
    store.set_watermark("customers", T0)  # the store is usable afterwards
    assert store.get_watermark("customers") == T0


def test_atomic_commits_nested_writes_once(store: StateStore, tmp_path: Path) -> None:
    with store.atomic():
        store.set_meta("a", "1")
        with store.atomic():
            store.set_meta("b", "2")
    with StateStore.open(tmp_path / "state.db") as other:  # another connection sees both
        assert (other.get_meta("a"), other.get_meta("b")) == ("1", "2")


# -- runs ------------------------------------------------------------------------------------


def test_runs_history(store: StateStore) -> None:
    first = store.start_run("sync-realtime", started_at=T0, pid=42)
    store.finish_run(first, outcome="ok", exit_code=0, counts={"sent": 3})
    second = store.start_run("sync-realtime", started_at=T0 + timedelta(minutes=1))
    export = store.start_run("export-initial", started_at=T0)
    store.finish_run(export, outcome="partial", exit_code=1, counts={"failed": 1},
                     message="1 contact queued")
    last = store.last_runs()
    assert list(last) == ["export-initial", "sync-realtime"]
    assert last["sync-realtime"].id == second
    assert last["sync-realtime"].ended_at is None and last["sync-realtime"].outcome is None
    assert last["export-initial"].counts == {"failed": 1}
    assert last["export-initial"].message == "1 contact queued"
    assert last["export-initial"].exit_code == 1
    assert [r.id for r in store.recent_runs()] == [export, second, first]
    assert [r.id for r in store.recent_runs(limit=1)] == [export]
    assert store.recent_runs()[2].started_at == T0


# -- watermarks and checkpoints --------------------------------------------------------------


def test_watermarks_round_trip(store: StateStore, tmp_path: Path) -> None:
    assert store.get_watermark("customers") is None
    store.set_watermark("customers", T0)
    store.set_watermark("subscribers", T0.astimezone(timezone(timedelta(hours=-7))))
    store.set_watermark("customers", T0 + timedelta(hours=1))  # moves
    with StateStore.open(tmp_path / "state.db") as again:
        got = again.get_watermark("customers")
        assert got == T0 + timedelta(hours=1)
        assert got is not None and got.utcoffset() == timedelta(0)
        assert again.watermarks() == {"customers": T0 + timedelta(hours=1), "subscribers": T0}


def test_checkpoints_round_trip(store: StateStore, tmp_path: Path) -> None:
    assert store.get_checkpoint("export-initial") is None
    data = {"started_at": "2024-05-01T10:30:15Z", "ranges": [[1, 500], [501, 1000]],
            "done": {"customers": 12}, "restart": False}
    store.set_checkpoint("export-initial", data)
    with StateStore.open(tmp_path / "state.db") as again:
        assert again.get_checkpoint("export-initial") == data
    store.set_checkpoint("export-initial", {"last_id": 9})
    assert store.get_checkpoint("export-initial") == {"last_id": 9}
    store.clear_checkpoint("export-initial")
    assert store.get_checkpoint("export-initial") is None
    store.clear_checkpoint("never-set")  # harmless


# -- contacts --------------------------------------------------------------------------------


def test_contact_records_round_trip(store: StateStore, tmp_path: Path) -> None:
    rec = ContactRecord(key="c:17", customer_id=17, subscriber_id=4, email="ann@example.com",
                        emarsys_id="900017",
                        sent={"1": "Ann", "4": "1990-02-03", "31": 1, "99": None,
                              "7": ["a", "b"]},
                        lists=frozenset({"customers", "subscribers"}))
    guest = ContactRecord(key="s:5", subscriber_id=5, email="guest@example.com")
    store.save_contacts([rec, guest])
    with StateStore.open(tmp_path / "state.db") as again:
        assert again.get_contacts(["c:17", "s:5", "c:404"]) == {"c:17": rec, "s:5": guest}
        assert again.get_contact("c:17") == rec
        assert again.get_contact("c:404") is None
        assert again.find_contact_by_subscriber(4) == rec
        assert again.find_contact_by_subscriber(6) is None
    assert store.count_contacts() == 2
    assert store.iter_contact_keys() == ["c:17", "s:5"]


def test_save_contacts_updates_but_keeps_a_known_emarsys_id(store: StateStore) -> None:
    store.save_contacts([ContactRecord("c:1", customer_id=1, emarsys_id="e1", sent={"1": "a"},
                                       lists=frozenset({"customers"}))])
    store.save_contacts([ContactRecord("c:1", customer_id=1, email="new@example.com",
                                       sent={"1": "b"})])
    got = store.get_contact("c:1")
    assert got == ContactRecord("c:1", customer_id=1, email="new@example.com",
                                emarsys_id="e1", sent={"1": "b"}, lists=frozenset())


def test_many_contacts_and_delete(store: StateStore) -> None:
    records = [ContactRecord(f"c:{i}", customer_id=i) for i in range(1, 1201)]
    store.save_contacts(records)
    keys = [r.key for r in records]
    assert len(store.get_contacts(keys + keys[:3])) == 1200  # more than one chunk of 500
    store.delete_contacts(keys[:1000])
    assert store.count_contacts() == 200
    assert store.get_contact("c:1") is None and store.get_contact("c:1200") is not None


# -- subscriber mirror -----------------------------------------------------------------------


def test_replace_mirror_replaces_everything(store: StateStore) -> None:
    assert store.mirror_read_at() is None
    old = [MirrorRow(1, 10, "a@example.com", 1, 1, 1), MirrorRow(2, 0, "g@example.com", 3)]
    assert store.replace_mirror(old, seen_at=T0) == 2
    new = [MirrorRow(2, 0, "g@example.com", 1, 1, 1), MirrorRow(3, 10, "a2@example.com", 1),
           MirrorRow(4, 0, "h@example.com", 3, 2, 5)]
    assert store.replace_mirror(new, seen_at=T0 + timedelta(hours=1)) == 3
    assert list(store.mirror_rows()) == new
    assert store.mirror_get(1) is None
    assert store.mirror_get(4) == new[2]
    assert store.mirror_count() == 3
    assert store.mirror_read_at() == T0 + timedelta(hours=1)
    assert [r.subscriber_id for r in store.mirror_rows(guests_only=True)] == [2, 4]
    assert store.mirror_for_customers([10, 11]) == {10: [new[1]]}
    assert store.replace_mirror([]) == 0
    assert store.mirror_count() == 0


def test_upsert_mirror_changes_single_rows(store: StateStore) -> None:
    store.replace_mirror([MirrorRow(1, 10, "a@example.com", 1), MirrorRow(2, 0, "b@x.org", 1)],
                         seen_at=T0)
    store.upsert_mirror([MirrorRow(1, 10, "a@example.com", 3), MirrorRow(9, 0, "n@x.org", 1)])
    assert store.mirror_get(1) == MirrorRow(1, 10, "a@example.com", 3)
    assert store.mirror_count() == 3
    assert store.mirror_read_at() == T0  # only a full read moves this


# -- failsafe queue --------------------------------------------------------------------------


def test_enqueue_counts_attempts_until_dead(store: StateStore) -> None:
    assert store.enqueue("c:1", "a@example.com", "invalid email", max_attempts=3) is False
    first = store.queue_items()[0]
    assert (first.key, first.kind, first.email, first.attempts, first.last_error,
            first.dead) == ("c:1", "sync", "a@example.com", 1, "invalid email", False)
    assert first.queued_at.utcoffset() == timedelta(0)
    assert store.enqueue("c:1", None, "still invalid", max_attempts=3) is False
    assert store.enqueue("c:1", None, "third time", max_attempts=3) is True
    assert store.queue_items() == []  # dead contacts are not live queue items
    dead = store.queue_items(dead=True)
    assert len(dead) == 1
    assert (dead[0].attempts, dead[0].last_error, dead[0].email) == (3, "third time",
                                                                     "a@example.com")
    assert dead[0].queued_at == first.queued_at  # "queued since" the first failure
    assert store.queue_counts() == {"queued": 0, "dead": 1}


def test_max_attempts_one_is_dead_at_once(store: StateStore) -> None:
    assert store.enqueue("c:2", None, "x", max_attempts=1) is True


def test_queue_kinds_are_separate(store: StateStore) -> None:
    store.enqueue("c:1", None, "sync error", max_attempts=5)
    store.enqueue("c:1", None, "optin error", max_attempts=5, kind="optin")
    assert sorted(i.kind for i in store.queue_items(kind=None)) == ["optin", "sync"]
    assert [i.last_error for i in store.queue_items()] == ["sync error"]
    assert store.queued_keys() == {"c:1"}
    assert store.queued_keys("optin") == {"c:1"}
    assert store.dequeue(["c:1"]) == 1
    assert store.queued_keys() == set()
    assert store.queued_keys("optin") == {"c:1"}


def test_dequeue_and_revive(store: StateStore) -> None:
    store.enqueue("c:1", None, "e", max_attempts=1)
    store.enqueue("c:2", None, "e", max_attempts=1)
    store.enqueue("c:3", None, "e", max_attempts=5)
    assert store.queue_counts() == {"queued": 1, "dead": 2}
    assert store.revive_dead() == 2
    revived = {i.key: i for i in store.queue_items()}
    assert set(revived) == {"c:1", "c:2", "c:3"}
    assert revived["c:1"].attempts == 0 and not revived["c:1"].dead
    assert store.enqueue("c:1", None, "again", max_attempts=2) is False  # attempt 1 again
    assert {i.key: i.attempts for i in store.queue_items()}["c:1"] == 1
    assert store.dequeue(["c:1", "c:2", "c:404"]) == 2
    assert [i.key for i in store.queue_items()] == ["c:3"]


def test_purge_queue(store: StateStore) -> None:
    store.enqueue("c:1", None, "e", max_attempts=1)  # dead
    store.enqueue("c:2", None, "e", max_attempts=5)
    store.enqueue("c:3", None, "e", max_attempts=5, kind="optin")
    assert store.purge_queue(dead=True) == 1
    assert store.queue_counts() == {"queued": 2, "dead": 0}
    assert store.purge_queue(kind="optin") == 1
    assert store.purge_queue() == 1
    assert store.queue_items(dead=None, kind=None) == []


# -- reports ---------------------------------------------------------------------------------


def test_reports_per_run(store: StateStore) -> None:
    run = store.start_run("pull-optin")
    store.add_reports(run, [("consent conflict", "c:1", "opted in twice"),
                            ("unknown", None, "no such contact")])
    store.add_reports(None, [("unconvertible", "c:2", "dob 'soon'")])
    assert [(k, key, d) for k, key, d, _ in store.reports(run)] == [
        ("consent conflict", "c:1", "opted in twice"), ("unknown", None, "no such contact")]
    newest_first = store.reports()
    assert [r[0] for r in newest_first] == ["unconvertible", "unknown", "consent conflict"]
    assert newest_first[0][3].utcoffset() == timedelta(0)
    assert len(store.reports(limit=1)) == 1


def test_lookups_of_any_length_find_exactly_the_stored_records(store: StateStore,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    store.save_contacts([ContactRecord(f"c:{i}", customer_id=i, sent={"1": str(i)})
                         for i in range(0, 1200, 2)])
    texts: set[str] = set()
    query = store._query

    def recording(sql: str, args: object = ()) -> object:
        texts.add(sql)
        return query(sql, args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_query", recording)
    for n in (1, 2, 7, 33, 299, 301, 499, 500, 501, 1200):
        wanted = [f"c:{i}" for i in range(n)]
        found = store.get_contacts(wanted)
        assert sorted(found) == sorted(k for k in wanted if int(k[2:]) % 2 == 0)
        assert all(found[k].sent == {"1": k[2:]} for k in found)
    # lists of any length share a handful of statements (the sqlite3 statement cache)
    assert len(texts) <= 6


def test_schema_4_file_migrates_without_the_contact_email_index(tmp_path: Path) -> None:
    """Schema 5 drops the unused email index and keeps only contacts with a subscriber id
    in the subscriber index; what a schema 4 file holds stays readable."""
    from magsync.state.schema import MIGRATIONS

    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:4]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 4")
    conn.executemany("INSERT INTO contacts (key, customer_id, subscriber_id, email, sent, "
                     "lists, updated_at) VALUES (?, ?, ?, ?, ?, ?, '2024-05-01T10:30:00Z')",
                     [("c:17", 17, 4, "a@example.com", '{"1":"Ann","_m31":1}',
                       '["customers","subscribers"]'),
                      ("c:18", 18, None, "b@example.com", '{"1":"Bo"}', '["customers"]')])
    conn.commit()
    conn.close()
    with StateStore.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 5
        assert s.get_contact("c:17") == ContactRecord(
            "c:17", 17, 4, "a@example.com", None, {"1": "Ann", "_m31": 1},
            frozenset({"customers", "subscribers"}))
        assert s.find_contact_by_subscriber(4).key == "c:17"  # type: ignore[union-attr]
        assert s.get_contact("c:18").sent == {"1": "Bo"}  # type: ignore[union-attr]
    conn = sqlite3.connect(path)
    indexes = {r[0]: r[1] for r in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'contacts'"
        " AND sql IS NOT NULL")}
    plan = " ".join(str(r[-1]) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT key FROM contacts WHERE subscriber_id = 4"))
    conn.close()
    assert "contacts_email" not in indexes
    assert "WHERE subscriber_id IS NOT NULL" in indexes["contacts_subscriber"]
    assert "contacts_subscriber" in plan


class _InterruptAfter:
    """A connection whose ``execute`` of one statement runs it, then raises as a signal
    handler would right after it (Ctrl-C between two statements)."""

    def __init__(self, conn: sqlite3.Connection, statement: str) -> None:
        self._conn, self._statement, self.fired = conn, statement, False

    def execute(self, sql: str, *args: object) -> object:
        result = self._conn.execute(sql, *args)
        if sql == self._statement and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return result

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


@pytest.mark.parametrize("statement", ["BEGIN IMMEDIATE", "COMMIT"])
def test_a_signal_right_after_begin_or_commit_leaves_no_transaction_open(
        store: StateStore, statement: str) -> None:
    real = store._conn
    store._conn = _InterruptAfter(real, statement)  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt), store.atomic():
            store.set_meta("k", "v")
        assert store._conn.fired  # type: ignore[attr-defined]
    finally:
        store._conn = real
    assert not real.in_transaction
    store.set_meta("after", "ok")  # the run can still record how it ended
    assert store.get_meta("after") == "ok"
    assert store.get_meta("k") == ("v" if statement == "COMMIT" else None)
