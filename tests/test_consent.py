"""Opt-in decisions: every consent case in both directions."""

from __future__ import annotations

from typing import Any

import pytest

from magsync.consent import (
    NOT_READ,
    OptinDecision,
    PullDecision,
    apply_record,
    decide_pull,
    decide_send,
    needs_emarsys_read,
    parse_optin,
)
from magsync.model import ContactRecord


def rec(sent31: Any = None, m31: Any = None, **extra: Any) -> ContactRecord:
    sent: dict[str, Any] = {"3": "a@example.com", **extra}
    if sent31 is not None:
        sent["31"] = sent31
    if m31 is not None:
        sent["_m31"] = m31
    return ContactRecord(key="c:5", customer_id=5, sent=sent)


class _C:
    def __init__(self, optin: int | None) -> None:
        self.optin = optin


@pytest.mark.parametrize(("value", "expected"), [
    (1, 1), ("1", 1), ("True", 1), (True, 1), (2, 2), ("2", 2), ("False", 2), (False, 2),
    (None, None), ("", None), ("x", None), (NOT_READ, None),
])
def test_parse_optin(value: Any, expected: int | None) -> None:
    assert parse_optin(value) == expected


# -- first send -------------------------------------------------------------------------


@pytest.mark.parametrize(("magento", "emarsys", "send"), [
    (1, None, 1), (1, "1", 1), (2, None, 2), (2, "1", 2), (2, "2", 2),
])
def test_first_send_sends_the_magento_value(magento: int, emarsys: Any, send: int) -> None:
    d = decide_send(magento, None, emarsys)
    assert d == OptinDecision(send=send, record={"31": send, "_m31": send})


def test_first_send_keeps_an_adopted_emarsys_opt_out() -> None:
    d = decide_send(1, None, "2")
    assert d.send is None and d.write_magento is None
    assert d.record == {"31": 2, "_m31": 1}
    assert d.conflict and "opt-out" in d.conflict


@pytest.mark.parametrize("emarsys", [None, "1", "2", NOT_READ])
def test_no_definite_magento_optin_sends_nothing(emarsys: Any) -> None:
    assert decide_send(None, None, emarsys) == OptinDecision()
    assert decide_send(None, rec(1, 1), emarsys) == OptinDecision()


def test_first_send_without_a_read_is_refused() -> None:
    with pytest.raises(ValueError, match="needs_emarsys_read"):
        decide_send(2, None, NOT_READ)


def test_record_without_m31_counts_as_first_send() -> None:
    assert decide_send(1, rec(), "2").record == {"31": 2, "_m31": 1}


# -- later sends ------------------------------------------------------------------------


@pytest.mark.parametrize(("magento", "record"), [(1, rec(1, 1)), (2, rec(2, 2)),
                                                 (1, rec(2, 1))])
def test_magento_unchanged_sends_no_optin(magento: int, record: ContactRecord) -> None:
    assert decide_send(magento, record, NOT_READ) == OptinDecision()


def test_magento_changed_to_opt_out_is_sent_without_a_read() -> None:
    assert decide_send(2, rec(1, 1), NOT_READ) == OptinDecision(
        send=2, record={"31": 2, "_m31": 2})


def test_magento_changed_to_opt_in_over_magsyncs_own_opt_out_is_sent() -> None:
    assert decide_send(1, rec(2, 2), "2") == OptinDecision(send=1, record={"31": 1, "_m31": 1})


def test_both_changed_and_disagree_opt_out_wins_on_both_sides() -> None:
    d = decide_send(1, rec(1, 2), "2")
    assert d.send is None and d.write_magento == 2
    assert d.record == {"31": 2, "_m31": 2}
    assert d.conflict


def test_after_an_adopted_opt_out_magento_1_2_1_may_send_1() -> None:
    record = apply_record(rec(), decide_send(1, None, "2").record)
    assert decide_send(1, record, NOT_READ) == OptinDecision()  # unchanged: not retried
    d2 = decide_send(2, record, NOT_READ)
    assert d2.send == 2
    record = apply_record(record, d2.record)
    d3 = decide_send(1, record, "2")  # the 2 is magsync's own now
    assert d3.send == 1 and d3.conflict is None


def test_adopted_opt_out_survives_a_pending_magento_status() -> None:
    record = apply_record(rec(), decide_send(1, None, "2").record)
    assert decide_send(None, record, "2") == OptinDecision()  # status 2/4: _m31 kept
    assert decide_send(1, record, "2") == OptinDecision()


def test_opt_in_over_a_changed_emarsys_value_needs_a_read() -> None:
    # Emarsys held 1 or nothing as far as magsync knows: a 2 there now is not magsync's.
    for record in (rec(1, 2), rec(None, 2)):
        with pytest.raises(ValueError):
            decide_send(1, record, NOT_READ)
        assert decide_send(1, record, "2").send is None


def test_opt_in_over_magsyncs_own_opt_out_needs_no_read() -> None:
    assert decide_send(1, rec(2, 2), NOT_READ) == decide_send(1, rec(2, 2), "2") \
        == OptinDecision(send=1, record={"31": 1, "_m31": 1})


def test_emarsys_empty_does_not_block_an_opt_in() -> None:
    assert decide_send(1, rec(2, 2), None).send == 1


@pytest.mark.parametrize(("magento", "record", "emarsys", "send"), [
    (1, rec(1, 1), "1", 1), (2, rec(2, 2), "1", 2), (1, rec(1, 1), "2", None),
    (1, rec(2, 1), "2", None),
])
def test_restart_resends_unless_it_would_override_an_opt_out(
        magento: int, record: ContactRecord, emarsys: Any, send: int | None) -> None:
    d = decide_send(magento, record, emarsys, restart=True)
    assert d.send == send
    if send is None:
        assert d.record == {}  # an unpulled Emarsys opt-out stays a change for pull-optin


def test_needs_emarsys_read() -> None:
    assert needs_emarsys_read(_C(2), None)
    assert needs_emarsys_read(_C(None), None)
    assert needs_emarsys_read(_C(1), rec(1, 2))  # Emarsys held 1: a 2 there is a change
    assert needs_emarsys_read(_C(1), rec(None, 2))
    # Magento re-subscribes over the opt-out magsync wrote: no Emarsys value changes that.
    assert not needs_emarsys_read(_C(1), rec(2, 2))
    assert not needs_emarsys_read(_C(1), rec(1, 1))
    assert not needs_emarsys_read(_C(2), rec(1, 1))
    assert not needs_emarsys_read(_C(None), rec(1, 1))
    assert needs_emarsys_read(_C(2), rec(1, 1), restart=True)


_RECORDED = [None, 1, 2, "1", "2", ""]


@pytest.mark.parametrize("magento", [1, 2, None])
@pytest.mark.parametrize("sent31", _RECORDED)
@pytest.mark.parametrize("m31", _RECORDED)
def test_a_read_is_skipped_only_where_no_emarsys_value_changes_the_decision(
        magento: int | None, sent31: Any, m31: Any) -> None:
    record = rec(sent31, m31)
    decisions = [decide_send(magento, record, e) for e in (None, "", "1", "2", "True",
                                                           "False")]
    if not needs_emarsys_read(_C(magento), record):
        assert all(d == decisions[0] for d in decisions)
        assert decide_send(magento, record, NOT_READ) == decisions[0]
    elif magento is not None:  # status 2/4 sends no opt-in, read or not
        with pytest.raises(ValueError, match="needs_emarsys_read"):
            decide_send(magento, record, NOT_READ)


# -- pull-optin -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", " "])
def test_pull_empty_value_is_no_change(value: Any) -> None:
    assert decide_pull(value, rec(1, 1), 1) == PullDecision()


@pytest.mark.parametrize(("value", "record"), [("1", rec(1, 1)), ("True", rec(1, 1)),
                                               ("2", rec(2, 2)), ("False", rec(2, 1))])
def test_pull_value_equal_to_what_magsync_sent_is_no_change(value: str,
                                                            record: ContactRecord) -> None:
    assert decide_pull(value, record, 2) == PullDecision()


def test_pull_confirmation_required_is_not_written_again() -> None:
    # Emarsys subscribes; Magento asks for confirmation and lands in status 2 (None).
    first = decide_pull("1", rec(2, 2), 2)
    assert first.changed and first.write_magento == 1
    record = apply_record(rec(2, 2), first.record)
    assert decide_pull("1", record, None) == PullDecision()
    # ... and the next sync sends nothing back either.
    assert decide_send(None, record, NOT_READ) == OptinDecision()


def test_pull_applies_an_emarsys_change_when_magento_did_not_change() -> None:
    d = decide_pull("2", rec(1, 1), 1)
    assert d == PullDecision(changed=True, write_magento=2, record={"31": 2, "_m31": 2})
    # no echo: the next sync sees Magento unchanged
    assert decide_send(2, apply_record(rec(1, 1), d.record), NOT_READ) == OptinDecision()


def test_pull_when_magento_already_agrees_writes_nothing() -> None:
    d = decide_pull("2", rec(1, 1), 2)
    assert d.changed and d.write_magento is None and d.send_emarsys is None
    assert d.record == {"31": 2, "_m31": 2} and d.conflict is None


def test_pull_both_changed_emarsys_opt_out_wins() -> None:
    # Emarsys still holds magsync's own 2: no change, whatever Magento did.
    assert decide_pull("2", rec(2, 2), 1) == PullDecision()
    d = decide_pull("2", rec(1, 2), 1)  # Emarsys 1 -> 2, Magento 2 -> 1
    assert d.changed and d.write_magento == 2 and d.send_emarsys is None
    assert d.record == {"31": 2, "_m31": 2} and d.conflict


def test_pull_both_changed_magento_opt_out_wins() -> None:
    d = decide_pull("1", rec(2, 1), 2)  # Emarsys 2 -> 1, Magento 1 -> 2
    assert d.changed and d.write_magento is None and d.send_emarsys == 2
    assert d.record == {"31": 2, "_m31": 2} and d.conflict


def test_pull_ignores_a_pending_magento_status_as_a_change() -> None:
    d = decide_pull("2", rec(1, 1), None)
    assert d.write_magento == 2 and d.conflict is None


def test_pull_for_a_contact_never_sent() -> None:
    d = decide_pull("1", None, 2)
    assert d == PullDecision(changed=True, write_magento=1, record={"31": 1, "_m31": 1})


def test_apply_record_merges_without_mutating() -> None:
    record = rec(1, 1)
    new = apply_record(record, {"31": 2})
    assert new.sent["31"] == 2 and new.sent["_m31"] == 1 and record.sent["31"] == 1
