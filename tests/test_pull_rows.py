"""The pure checks of ``pull-optin``'s rows: strict keys and ownership (SPEC 4)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from magsync.model import ContactRecord, MirrorRow
from magsync.sync.pull_rows import (
    MAX_MAGENTO_ID,
    ChangeRow,
    Columns,
    Person,
    ownership_problem,
    parse_key,
    parse_row,
    subscriber_problem,
)

# -- keys -------------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=MAX_MAGENTO_ID), st.integers(0, 3))
def test_every_magento_id_parses_with_or_without_a_decimal_zero(n: int, zeros: int) -> None:
    assert parse_key(str(n)) == n
    if zeros:
        assert parse_key(f"{n}." + "0" * zeros) == n


@given(st.integers(min_value=MAX_MAGENTO_ID + 1, max_value=10 ** 30))
def test_ids_beyond_magentos_range_are_refused(n: int) -> None:
    assert parse_key(str(n)) is None and parse_key(f"{n}.0") is None


@given(st.text(max_size=14))
def test_anything_accepted_is_a_plain_decimal_integer(text: str) -> None:
    number = parse_key(text)
    if number is not None:
        assert re.fullmatch(r"[1-9][0-9]*(\.0+)?", text, flags=re.ASCII)
        assert str(number) == text.partition(".")[0] and 1 <= number <= MAX_MAGENTO_ID


@pytest.mark.parametrize("text", [
    "1e1", "6_0", "\u0663", "\u0661\u0662", "\uff11", "+5", "-5", "0", "012", "0.0", " 5",
    "5 ", "5\n", "12.5", "12.", ".5", "0x1f", "4294967296", "9007199254740993", "inf",
    "NaN", "1,000", "", "١٢",
])
def test_what_float_would_have_taken_is_refused(text: str) -> None:
    assert parse_key(text) is None


def test_rows_keep_bad_keys_and_read_email_and_contact_id() -> None:
    cols = Columns("Cust", "Sub", "Opt-In", "E-Mail", "user_id")
    row = parse_row({"user_id": " 285 ", "Cust": "12.0", "Sub": "", "E-Mail": "A@x.org ",
                     "Opt-In": "False"}, cols)
    assert row == ChangeRow(12, None, "False", None, user_id="285", email="A@x.org")
    assert parse_row({"Cust": "1e1", "Sub": "7", "Opt-In": "True"}, cols).bad_key == "1e1"


# -- ownership --------------------------------------------------------------------------------

RECORD = ContactRecord("c:5", customer_id=5, emarsys_id="900")


def person(**over: object) -> Person:
    fields: dict[str, object] = {"key": "c:5", "customer_id": 5, "email": "ana@example.com",
                                 "website_id": 1, "record": RECORD}
    fields.update(over)
    return Person(**fields)  # type: ignore[arg-type]


def row(**over: object) -> ChangeRow:
    fields: dict[str, object] = {"customer_id": 5, "subscriber_id": None, "optin": "False",
                                 "user_id": "900", "email": "ana@example.com"}
    fields.update(over)
    return ChangeRow(**fields)  # type: ignore[arg-type]


def test_the_recorded_contact_may_write_whatever_its_email() -> None:
    assert ownership_problem(row(), person(), [1]) is None
    assert ownership_problem(row(email="new@example.org"), person(), [1]) is None
    assert ownership_problem(row(optin="True"), person(), ()) is None


def test_another_contact_with_the_key_may_not() -> None:
    problem = ownership_problem(row(user_id="901"), person(), [1])
    assert problem is not None and "not the contact magsync recorded for c:5 (900)" in problem


@pytest.mark.parametrize("email, ok", [("ana@example.com", True), ("ANA@Example.COM ", True),
                                       ("other@example.com", False), ("", False)])
def test_without_a_recorded_id_the_email_decides(email: str, ok: bool) -> None:
    record = ContactRecord("c:5", customer_id=5)
    problem = ownership_problem(row(email=email, user_id="1"), person(record=record), ())
    assert (problem is None) == ok


def test_website_ids_are_respected() -> None:
    assert ownership_problem(row(), person(website_id=2), [1]) is not None
    assert ownership_problem(row(), person(website_id=2), ()) is None


@given(st.sampled_from(["True", "1", "true"]), st.booleans())
def test_an_optin_needs_a_record_an_optout_does_not(optin: str, known: bool) -> None:
    record = ContactRecord("c:5", customer_id=5) if known else None
    p = person(record=record)
    assert (ownership_problem(row(optin=optin, user_id=""), p, ()) is None) == known
    assert ownership_problem(row(optin="False", user_id=""), p, ()) is None


def test_a_subscriber_id_must_be_that_persons_in_the_mirror() -> None:
    mine = MirrorRow(9, 5, "ana@example.com", 1)
    theirs = MirrorRow(9, 6, "bo@example.com", 1)
    guest = MirrorRow(9, 0, "gil@example.com", 1)
    assert subscriber_problem(row(subscriber_id=None), 5, None) is None
    assert subscriber_problem(row(subscriber_id=9), 5, mine) is None
    assert subscriber_problem(row(subscriber_id=9), None, guest) is None
    assert "customer 6's" in (subscriber_problem(row(subscriber_id=9), 5, theirs) or "")
    assert "a guest's" in (subscriber_problem(row(subscriber_id=9), 5, guest) or "")
    assert subscriber_problem(row(subscriber_id=9), None, mine) == \
        "subscriber 9 is customer 5's in Magento, not a guest's"
    assert "not in Magento's subscriber list" in (
        subscriber_problem(row(subscriber_id=9), 5, None) or "")
