"""List membership in the state file (``state/lists.py``): roles recorded per contact, the
list id they mean, dropped when the list changes, and the contacts still owed to a list."""

from __future__ import annotations

from pathlib import Path

import pytest

from magsync.model import ContactRecord
from magsync.state import StateStore
from magsync.state import lists as state_lists


def _records() -> list[ContactRecord]:
    both = frozenset({"customers", "subscribers"})
    return ([ContactRecord(f"c:{i}", customer_id=i, subscriber_id=100 + i if i % 2 else None,
                           lists=both if i % 2 else frozenset({"customers"}))
             for i in range(1, 13)]
            + [ContactRecord(f"s:{i}", subscriber_id=i, lists=frozenset({"subscribers"}))
               for i in range(200, 205)]
            + [ContactRecord("c:50", customer_id=50, subscriber_id=150)])  # joined none


def test_a_new_list_id_drops_the_role_from_every_record(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setattr(state_lists, "_CHUNK", 5)  # several chunks
    with StateStore.open(tmp_path / "state.db") as store:
        store.save_contacts(_records())
        assert store.list_binding("customers") is None
        assert store.bind_list("customers", 900101, drop_members=False) == 0
        assert store.list_binding("customers") == 900101

        assert store.bind_list("customers", 900777, drop_members=True) == 12

        assert store.list_binding("customers") == 900777
        records = store.get_contacts([f"c:{i}" for i in range(1, 13)] + ["s:200"])
        assert all("customers" not in r.lists for r in records.values())
        assert records["c:1"].lists == {"subscribers"}  # the other role stays
        assert records["s:200"].lists == {"subscribers"}


def test_the_contacts_owed_to_a_list_by_kind(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as store:
        store.save_contacts(_records())
        assert [m.key for m in store.missing_list_members("customers", "c")] == ["c:50"]
        owed = store.missing_list_members("subscribers", "c")
        # customers with a subscriber id only, added by their customer id
        assert [(m.key, m.key_value) for m in owed] == [("c:50", "50")]
        assert store.missing_list_members("subscribers", "s") == []
        store.bind_list("subscribers", 1, drop_members=False)
        store.bind_list("subscribers", 2, drop_members=True)
        guests = store.missing_list_members("subscribers", "s", limit=3)
        assert [(m.key, m.key_value) for m in guests] == [("s:200", "200"), ("s:201", "201"),
                                                          ("s:202", "202")]
        assert [m.key for m in store.missing_list_members("subscribers", "s",
                                                          after="s:202")] == ["s:203", "s:204"]

        store.add_list_role(guests, "subscribers")

        assert [m.key for m in store.missing_list_members("subscribers", "s")] == \
            ["s:203", "s:204"]
        assert store.get_contact("s:200").lists == {"subscribers"}  # type: ignore[union-attr]
