"""Diff against the state record, list membership, and the first-send identity plan."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from magsync.consent import NOT_READ, OptinDecision, decide_send
from magsync.diff import IdentityPlan, Send, plan_identity, plan_send, record_after_send
from magsync.mapping import customer_contact, guest_contact
from magsync.model import Contact, ContactRecord
from tests.helpers.mapping import make_customer, make_mapping, row

M = make_mapping()
NO_OPTIN = OptinDecision()


def first_sent(contact: Contact, on_empty: str = "skip") -> tuple[Send, ContactRecord]:
    decision = decide_send(contact.optin, None, None)
    send = plan_send(contact, None, decision, on_empty=on_empty)
    assert send is not None
    return send, record_after_send(contact, None, send, decision, emarsys_id="77")


def resend(contact: Contact, record: ContactRecord, on_empty: str = "skip",
           emarsys: Any = NOT_READ) -> Send | None:
    decision = decide_send(contact.optin, record, emarsys)
    return plan_send(contact, record, decision, on_empty=on_empty)


# -- plan_send --------------------------------------------------------------------------


def test_first_send_sends_every_mapped_field_and_joins_lists() -> None:
    c = customer_contact(make_customer(), [row(9)], M)
    send, record = first_sent(c)
    assert send.first_send and send.join_lists == {"customers", "subscribers"}
    assert send.payload == c.fields
    assert record.sent == {**c.fields, "_m31": 1} and record.lists == send.join_lists
    assert record.key == "c:5" and record.subscriber_id == 9 and record.emarsys_id == "77"


def test_same_contact_twice_after_recording_yields_nothing() -> None:
    c = customer_contact(make_customer(), [row(9)], M)
    _, record = first_sent(c)
    assert resend(c, record) is None


def test_changed_field_sends_that_field_and_the_key() -> None:
    _, record = first_sent(customer_contact(make_customer(), [row(9)], M))
    c2 = customer_contact(make_customer(lastname="Silva"), [row(9)], M)
    send = resend(c2, record)
    assert send == Send(payload={"2": "Silva", "7001": "5"})


def test_email_change_updates_the_same_contact() -> None:
    _, record = first_sent(customer_contact(make_customer(), [], M))
    c2 = customer_contact(make_customer(email="new@example.com"), [], M)
    send = resend(c2, record)
    assert send is not None and send.payload == {"3": "new@example.com", "7001": "5"}
    assert record_after_send(c2, record, send, NO_OPTIN).email == "new@example.com"


def test_opt_in_change_is_sent_and_recorded() -> None:
    _, record = first_sent(customer_contact(make_customer(), [row(9, status=1)], M))
    c2 = customer_contact(make_customer(), [row(9, status=3)], M)
    decision = decide_send(c2.optin, record, NOT_READ)
    send = plan_send(c2, record, decision, on_empty="skip")
    assert send is not None and send.payload == {"31": 2, "7001": "5"}
    after = record_after_send(c2, record, send, decision)
    assert after.sent["31"] == 2 and after.sent["_m31"] == 2
    assert resend(c2, after) is None


def test_opt_in_withheld_by_the_decision_is_not_sent() -> None:
    c = customer_contact(make_customer(), [row(9, status=1)], M)
    decision = decide_send(c.optin, None, "2")
    send = plan_send(c, None, decision, on_empty="skip")
    assert send is not None and "31" not in send.payload
    record = record_after_send(c, None, send, decision)
    assert record.sent["31"] == 2 and record.sent["_m31"] == 1
    assert resend(c, record) is None


def test_on_empty_skip_never_blanks_emarsys() -> None:
    _, record = first_sent(customer_contact(make_customer(), [], M))
    c2 = customer_contact(make_customer(firstname=""), [], M)
    assert resend(c2, record) is None
    c3 = customer_contact(make_customer(firstname=None), [], M)
    send, rec3 = first_sent(c3)
    assert "1" not in send.payload and "1" not in rec3.sent


def test_on_empty_clear_sends_empty_string_once() -> None:
    _, record = first_sent(customer_contact(make_customer(), [], M), on_empty="clear")
    c2 = customer_contact(make_customer(firstname=None), [], M)
    send = resend(c2, record, on_empty="clear")
    assert send is not None and send.payload == {"1": "", "7001": "5"}
    after = record_after_send(c2, record, send, NO_OPTIN)
    assert resend(c2, after, on_empty="clear") is None


def test_unconvertible_value_does_not_blank_even_with_clear() -> None:
    _, record = first_sent(customer_contact(make_customer(), [], M), on_empty="clear")
    customer = make_customer()
    customer["addresses"][0]["country_id"] = "XK"
    c2 = customer_contact(customer, [], M)
    assert resend(c2, record, on_empty="clear") is None
    assert c2.problems


def test_newly_mapped_field_is_sent_to_an_unchanged_contact() -> None:
    narrow = make_mapping({"firstname": 1})
    _, record = first_sent(customer_contact(make_customer(), [], narrow))
    wide = make_mapping({"firstname": 1, "lastname": 2})
    assert wide.hash != narrow.hash
    send = resend(customer_contact(make_customer(), [], wide), record)
    assert send == Send(payload={"2": "Lopes", "7001": "5"})


def test_restart_sends_everything_again() -> None:
    c = customer_contact(make_customer(), [row(9)], M)
    _, record = first_sent(c)
    decision = decide_send(c.optin, record, "1", restart=True)
    send = plan_send(c, record, decision, on_empty="skip", restart=True)
    assert send is not None and send.payload == c.fields
    assert not send.first_send and send.join_lists == frozenset()


def test_guest_who_registers_joins_the_customers_list() -> None:
    guest = guest_contact(row(9, cid=0, status=1), M)
    _, guest_record = first_sent(guest)
    assert guest_record.lists == {"subscribers"}
    customer = customer_contact(make_customer(), [row(9, cid=5, status=1)], M)
    send = plan_send(customer, guest_record,
                     decide_send(customer.optin, guest_record, NOT_READ), on_empty="skip")
    assert send is not None and send.join_lists == {"customers"}
    assert send.payload["7001"] == "5" and "31" not in send.payload and "7002" not in send.payload
    after = record_after_send(customer, guest_record, send, NO_OPTIN)
    assert after.key == "c:5" and after.lists == {"customers", "subscribers"}


def test_list_not_recorded_yet_is_joined_again() -> None:
    c = customer_contact(make_customer(), [row(9)], M)
    _, record = first_sent(c)
    crashed = replace(record, lists=frozenset())  # upsert landed, list call did not
    send = resend(c, crashed)
    assert send == Send(payload={"7001": "5"}, join_lists=frozenset({"customers",
                                                                     "subscribers"}))


def test_customer_gets_a_subscriber_row_later() -> None:
    _, record = first_sent(customer_contact(make_customer(), [], M))
    c2 = customer_contact(make_customer(), [row(9, status=1)], M)
    send = resend(c2, record, emarsys="2")  # Emarsys 2 is magsync's own (no row -> 2)
    assert send is not None and send.join_lists == {"subscribers"}
    assert send.payload == {"7002": "9", "31": 1, "7001": "5"}


def test_record_after_send_keeps_old_values_and_emarsys_id() -> None:
    c = customer_contact(make_customer(), [], M)
    _, record = first_sent(c)
    after = record_after_send(c, record, None, NO_OPTIN)
    assert after.sent == record.sent and after.emarsys_id == "77"


# -- identity ---------------------------------------------------------------------------


def cust(subscriber: bool = False) -> Contact:
    return customer_contact(make_customer(), [row(9)] if subscriber else [], M)


def test_no_match_creates() -> None:
    assert plan_identity(cust(), None, []) == IdentityPlan("create")


def test_one_keyless_email_match_is_adopted() -> None:
    plan = plan_identity(cust(True), None,
                         [{"id": "501", "7001": "", "7002": None, "31": "2", "3": "x"}])
    assert plan.kind == "adopt" and plan.key_id == "id" and plan.emarsys_id == "501"
    assert plan.update == {"id": "501", "7001": "5", "7002": "9"}
    assert plan.emarsys_optin == "2"
    assert decide_send(1, None, plan.emarsys_optin).send is None  # adopted opt-out kept


def test_guest_adopts_with_its_subscriber_key() -> None:
    guest = guest_contact(row(9, cid=0), M)
    plan = plan_identity(guest, None, [{"id": "501", "31": "1"}])
    assert plan.kind == "adopt" and plan.update == {"id": "501", "7002": "9"}
    assert plan.emarsys_optin == "1"


def test_match_carrying_another_key_is_left_alone() -> None:
    plan = plan_identity(cust(), None, [{"id": "501", "7001": "6", "31": "2"}])
    assert plan.kind == "create" and plan.update is None and plan.emarsys_optin is None
    assert plan.ignored == ("501",)
    assert decide_send(1, None, plan.emarsys_optin).send == 1


def test_match_carrying_our_own_key_is_ours() -> None:
    plan = plan_identity(cust(), None, [{"id": "501", "7001": "5", "31": "2"},
                                        {"id": "502", "31": "1"}])
    assert plan.kind == "create" and plan.emarsys_id == "501" and plan.emarsys_optin == "2"


def test_several_keyless_matches_are_ambiguous() -> None:
    plan = plan_identity(cust(), None, [{"id": "501"}, {"id": "502", "7001": ""},
                                        {"id": "503", "7002": "4"}])
    assert plan.kind == "ambiguous" and plan.update is None
    assert plan.reason and "501, 502" in plan.reason and plan.ignored == ("503",)


def test_guest_who_registered_is_attached_by_subscriber_id() -> None:
    plan = plan_identity(cust(True), [{"id": "600", "7002": "9", "7001": "", "31": "1"}],
                         [{"id": "601"}])
    assert plan.kind == "attach" and plan.key_id == "7002" and plan.emarsys_id == "600"
    assert plan.update == {"7001": "5", "7002": "9"} and plan.emarsys_optin == "1"


def test_subscriber_match_already_attached_to_us_is_ours() -> None:
    plan = plan_identity(cust(True), [{"id": "600", "7002": "9", "7001": "5", "31": "2"}], [])
    assert plan.kind == "create" and plan.emarsys_optin == "2"


@pytest.mark.parametrize("rows", [
    [{"id": "600", "7002": "9", "7001": "8"}],
    [{"id": "600", "7002": "9"}, {"id": "601", "7002": "9"}],
])
def test_subscriber_match_that_cannot_be_attached_is_ambiguous(
        rows: list[dict[str, Any]]) -> None:
    assert plan_identity(cust(True), rows, []).kind == "ambiguous"


def test_no_subscriber_match_falls_back_to_email() -> None:
    plan = plan_identity(cust(True), [], [{"id": "501", "31": "1"}])
    assert plan.kind == "adopt"
