"""Hypothesis properties of mapping, diff and consent."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magsync.consent import (
    NOT_READ,
    apply_record,
    decide_pull,
    decide_send,
    needs_emarsys_read,
    parse_optin,
)
from magsync.diff import plan_send, record_after_send
from magsync.mapping import ResolvedMapping, customer_contact, guest_contact
from magsync.model import Contact, ContactRecord, MirrorRow
from tests.helpers.mapping import make_mapping

PROPS = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
MAPPINGS = [make_mapping(on_empty=e, subscribers=s)
            for e in ("skip", "clear") for s in ("emarsys-module", "none")]

empty = st.sampled_from([None, "", "  "])
text = st.one_of(empty, st.text(min_size=1, max_size=12))
dates = st.one_of(empty, st.dates().map(str), st.datetimes().map(lambda d: d.isoformat(" ")),
                  st.just("not a date"))
countries = st.one_of(empty, st.sampled_from(["PT", "US", "de", "NL", "XK", "ZZ", "Portugal"]))
optin_values = st.sampled_from([None, 1, 2])


@st.composite
def addresses(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 2))):
        out.append({
            "id": 100 + i, "city": draw(text), "country_id": draw(countries),
            "street": draw(st.one_of(st.none(), st.lists(st.one_of(st.none(), text),
                                                          max_size=3))),
            "region": draw(st.one_of(st.none(), st.builds(
                lambda r: {"region": r, "region_code": "X", "region_id": 1}, text))),
            "default_billing": draw(st.booleans()), "default_shipping": draw(st.booleans()),
        })
    return out


@st.composite
def customers(draw: st.DrawFn) -> dict[str, Any]:
    addrs = draw(addresses())
    pointer = st.one_of(st.none(), st.just("999"),
                        st.sampled_from([str(a["id"]) for a in addrs] or ["100"]))
    return {
        "id": draw(st.integers(1, 10**6)), "email": draw(st.one_of(empty, st.emails())),
        "firstname": draw(text), "lastname": draw(text), "dob": draw(dates),
        "gender": draw(st.sampled_from([None, 0, 1, 2, 3, "2"])),
        "website_id": draw(st.sampled_from([1, 2])), "store_id": 1,
        "default_billing": draw(pointer), "default_shipping": draw(pointer),
        "addresses": addrs,
        "custom_attributes": draw(st.one_of(st.none(), st.builds(
            lambda v: [{"attribute_code": "loyalty_tier", "value": v}],
            st.sampled_from([None, "", "Gold", "silver", "Platinum"])))),
        "extension_attributes": draw(st.one_of(st.none(), st.fixed_dictionaries({
            "is_subscribed": st.one_of(st.none(), st.booleans()), "company_note": text}))),
    }


def rows_for(customer_id: int) -> st.SearchStrategy[list[MirrorRow]]:
    one = st.builds(lambda sid, status, web: MirrorRow(sid, customer_id, "r@example.com",
                                                        status, web, 1),
                    st.integers(1, 10**6), st.integers(1, 4), st.sampled_from([1, 2, None]))
    return st.lists(one, max_size=2)


@st.composite
def contacts(draw: st.DrawFn) -> tuple[Contact, ResolvedMapping, Any]:
    """(contact, mapping, source input) for both key kinds and every mapping variant."""
    m = draw(st.sampled_from(MAPPINGS))
    if draw(st.booleans()):
        customer = draw(customers())
        rows = draw(rows_for(customer["id"]))
        return customer_contact(customer, rows, m), m, (customer, rows)
    row = MirrorRow(draw(st.integers(1, 10**6)), 0, draw(st.emails()),
                    draw(st.integers(1, 4)), draw(st.sampled_from([1, None])), 1)
    return guest_contact(row, m), m, row


def send_and_record(contact: Contact, record: ContactRecord | None, on_empty: str,
                    emarsys: Any) -> ContactRecord | None:
    read = emarsys if needs_emarsys_read(contact, record) else NOT_READ
    decision = decide_send(contact.optin, record, read)
    send = plan_send(contact, record, decision, on_empty=on_empty)
    if send is None:
        return None
    return record_after_send(contact, record, send, decision)


@PROPS
@given(customers(), st.data())
def test_mapping_never_mutates_its_input(customer: dict[str, Any], data: st.DataObject
                                         ) -> None:
    rows = data.draw(rows_for(customer["id"]))
    m = data.draw(st.sampled_from(MAPPINGS))
    before = copy.deepcopy((customer, rows))
    customer_contact(customer, rows, m)
    assert (customer, rows) == before


@PROPS
@given(contacts())
def test_a_mapped_contact_always_carries_its_key(case: tuple[Contact, ResolvedMapping, Any]
                                                 ) -> None:
    contact, m, _ = case
    assert contact.key_value and contact.fields[str(contact.key_field)] == contact.key_value
    assert contact.key_field in (m.customer_key_field, m.subscriber_key_field)
    assert contact.key.startswith("c:" if contact.customer_id is not None else "s:")
    assert set(contact.fields) <= m.field_ids()
    expected_lists = ({"customers"} if contact.customer_id is not None else set()) | (
        {"subscribers"} if contact.subscriber_id is not None else set())
    assert contact.lists == expected_lists


@PROPS
@given(contacts(), st.sampled_from(["1", "2", None]))
def test_sending_the_same_record_twice_after_recording_yields_nothing(
        case: tuple[Contact, ResolvedMapping, Any], emarsys: str | None) -> None:
    contact, m, _ = case
    record = send_and_record(contact, None, m.on_empty, emarsys)
    assert record is not None
    decision = decide_send(contact.optin, record,
                           emarsys if needs_emarsys_read(contact, record) else NOT_READ)
    assert plan_send(contact, record, decision, on_empty=m.on_empty) is None


@PROPS
@given(contacts(), st.text(min_size=1, max_size=8), st.data())
def test_the_diff_of_a_changed_field_holds_that_field_and_the_key(
        case: tuple[Contact, ResolvedMapping, Any], new: str, data: st.DataObject) -> None:
    contact, m, _ = case
    record = send_and_record(contact, None, m.on_empty, None)
    assert record is not None
    key = str(contact.key_field)
    candidates = sorted(f for f in contact.fields if f not in (key, "31"))
    fid = data.draw(st.sampled_from(candidates))
    value = f"{new}#{contact.fields[fid]}"
    changed = replace(contact, fields={**contact.fields, fid: value})
    decision = decide_send(changed.optin, record, NOT_READ)
    send = plan_send(changed, record, decision, on_empty=m.on_empty)
    assert send is not None
    assert send.payload == {fid: value, key: contact.key_value}
    assert send.join_lists == frozenset()


sent_values = st.sampled_from([None, 1, 2, "1", "2"])


@st.composite
def records(draw: st.DrawFn) -> ContactRecord | None:
    if draw(st.booleans()):
        return None
    sent: dict[str, Any] = {}
    for key in ("31", "_m31"):
        value = draw(sent_values)
        if value is not None:
            sent[key] = value
    return ContactRecord(key="c:1", customer_id=1, sent=sent)


@settings(max_examples=200, deadline=None)
@given(optin_values, records(), st.sampled_from(["1", "2", None, NOT_READ]),
       st.booleans())
def test_one_decision_never_sends_opt_in_over_an_opt_out_magsync_did_not_write(
        m: int | None, record: ContactRecord | None, read: Any, restart: bool) -> None:
    try:
        d = decide_send(m, record, read, restart=restart)
    except ValueError:
        assert read is NOT_READ
        return
    if d.send == 1:
        first = record is None or "_m31" not in record.sent
        own_opt_out = not first and parse_optin(record.sent.get("31")) == 2
        # Sent after a read, or over the opt-out magsync wrote, where no read can matter.
        assert read is not NOT_READ or own_opt_out
        assert read != "2" or own_opt_out
    assert d.write_magento in (None, 2)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["magento", "emarsys", "sync", "pull"]),
                          optin_values), max_size=14))
def test_no_sequence_ever_turns_a_foreign_opt_out_into_an_opt_in(
        events: list[tuple[str, int | None]]) -> None:
    """Simulate both systems and magsync's runs in any order.

    ``known`` is the opt-in magsync last wrote into Emarsys or applied from it, tracked
    here apart from the record (a consent conflict records 2 without writing it). An
    Emarsys 2 is foreign while it differs from ``known``: by SPEC's rule a value equal to
    what magsync wrote is no change, so a 2 -> empty -> 2 between two runs (an ABA) is
    not foreign, by definition.
    """
    emarsys: int | None = None
    known: int | None = None
    magento: int | None = 2
    record: ContactRecord | None = None
    for kind, value in events:
        if kind == "magento":
            magento = value
        elif kind == "emarsys":
            emarsys = value
        elif kind == "sync":
            read = str(emarsys) if emarsys else None
            holder = _OptinHolder(magento)
            d = decide_send(magento, record,
                            read if needs_emarsys_read(holder, record) else NOT_READ)
            assert not (d.send == 1 and emarsys == 2 and known != 2), (emarsys, known)
            if d.send is not None:
                emarsys = known = d.send
            if d.write_magento is not None:
                magento = d.write_magento
            record = apply_record(record or ContactRecord(key="c:1"), d.record)
        else:
            p = decide_pull(str(emarsys) if emarsys else None, record, magento)
            if p.changed:
                known = emarsys  # applied to Magento: acknowledged
            if p.write_magento is not None:
                magento = p.write_magento
            if p.send_emarsys is not None:
                emarsys = known = p.send_emarsys
            record = apply_record(record or ContactRecord(key="c:1"), p.record)


class _OptinHolder:
    """Stands in for a Contact in ``needs_emarsys_read``."""

    def __init__(self, optin: int | None) -> None:
        self.optin = optin


_RAW = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=False, width=16),
    st.sampled_from(["", "  ", "1", "2", "3", " 2 ", "US", "us", " DE", "DE ", "XX", "U",
                     "1980-05-12", " 1980-05-12", "1980-05-12 10:00:00", "1980-13-40",
                     "1980-05", "gold", " Gold ", "Müller", "a\tb"]),
    st.text(max_size=12), st.lists(st.sampled_from(["a", "b", None, 1]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 2), max_size=2))


@PROPS
@given(_RAW)
def test_the_fused_converters_convert_exactly_as_convert_value(raw: Any) -> None:
    """The per-customer shortcut (``fused_converter``) gives convert_value's value, or
    its error, for any raw value of every converter."""
    from magsync.mapping.converters import MappedField, convert_value, fused_converter

    entries = [MappedField("p", 1, "text"), MappedField("p", 4, "date"),
               MappedField("p", 5, "gender", {"1": "1", "2": "2"}),
               MappedField("p", 5, "gender", {"1": "7"}),
               MappedField("p", 14, "country", {"US": "185", "DE": "65", "us": "9"}),
               MappedField("p", 20, "choice", {"gold": "3"})]
    for entry in entries:
        try:
            expected: Any = ("value", convert_value(raw, entry))
        except ValueError as exc:
            expected = ("error", str(exc))
        try:
            got: Any = ("value", fused_converter(entry)(raw))
        except ValueError as exc:
            got = ("error", str(exc))
        assert got == expected, (entry.convert, raw)
