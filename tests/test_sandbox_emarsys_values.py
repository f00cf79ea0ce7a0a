"""The upsert path's per-field normalisers give exactly what ``normalize_value`` gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magsync.sandbox.emarsys.data import EmarsysAccount
from magsync.sandbox.emarsys.fields import (
    CREATABLE_TYPES,
    Field,
    build_system_fields,
    normalize_value,
    value_normalizer,
)


def all_fields() -> list[Field]:
    account = EmarsysAccount()
    for kind in CREATABLE_TYPES:
        account.create_field(f"custom {kind}", kind)
    return [f for f in account.fields.values() if not f.read_only]


class Text(str):
    """A str subclass: must take the full path, as in ``normalize_value``."""


VALUES = st.one_of(
    st.none(), st.just(""), st.booleans(), st.integers(-5, 300), st.floats(),
    st.text(max_size=20), st.text(min_size=250, max_size=260),
    st.from_regex(r"\A-?\d{1,4}(\.\d{1,2})?\Z"), st.from_regex(r"\A\d{4}-\d{2}-\d{2}\Z"),
    st.sampled_from(["1", "2", " 12 ", "1.0", "01", "٣", "x" * 1025, "1980-02-29"]),
    st.builds(Text, st.sampled_from(["1", "abc", ""])), st.lists(st.integers(), max_size=2),
)


def outcome(normalize: Any, value: Any) -> tuple[str, Any]:
    try:
        result = normalize(value)
    except ValueError as exc:  # InvalidValue, or the ValueError of int("²") after isdigit()
        return "error", (type(exc), str(exc))
    return "ok", (type(result), result)


@pytest.mark.parametrize("fld", all_fields(), ids=lambda f: f"{f.id}-{f.application_type}")
@settings(max_examples=100, deadline=None)
@given(value=VALUES)
def test_field_normaliser_matches_normalize_value(fld: Field, value: Any) -> None:
    assert outcome(value_normalizer(fld), value) == outcome(
        lambda v: normalize_value(fld, v), value)


def test_system_fields_all_have_a_normaliser() -> None:
    for fld in build_system_fields().values():
        assert callable(value_normalizer(fld))


def test_key_lookup_by_a_non_canonical_value_finds_the_same_contact() -> None:
    account = EmarsysAccount()
    first = account.upsert("7001", [{"7001": "12", "3": "a@example.com"}], create=True)
    again = account.upsert("7001", [{"7001": 12.0, "1": "Ann"}], create=True)
    alias = account.upsert("7001", [{"7001": " 12 ", "07001": "12"}], create=True)
    cid = first.ids[0]
    assert again.ids == alias.ids == [str(cid)]  # created once (an int), then found
    assert not again.errors and not alias.errors
    assert account.find_contacts(7001, "12") == [cid]
