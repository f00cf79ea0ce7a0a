"""Opt-in (field 31) decisions in both directions. Pure code.

The state model: in ``ContactRecord.sent``, ``"31"`` is the opt-in Emarsys holds as far
as magsync knows (written by magsync, or applied from Emarsys) and ``"_m31"`` is
Magento's opt-in as of the last sync. Magento changed iff its current opt-in differs from
``_m31``; Emarsys changed iff its value differs from ``31``. When both changed and
disagree, the opt-out wins on both sides. No decision ever sends opt-in 1 over an Emarsys
opt-out that magsync did not write itself (SPEC section 3, "Consent is never
manufactured").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from magsync.model import MAGENTO_OPTIN, OPTIN, ContactRecord


class _NotRead(enum.Enum):
    NOT_READ = "not read"


NOT_READ = _NotRead.NOT_READ
"""Sentinel for ``emarsys_optin``: the caller did not read Emarsys for this contact."""

EmarsysOptin = str | int | None | _NotRead


# Not frozen: one is built per contact per run, and a frozen __init__ costs about
# three times as much. Treat it as immutable all the same.
@dataclass(slots=True)
class OptinDecision:
    """What to do with field 31 when sending a contact (Magento -> Emarsys).

    ``send``: the opt-in to put in the payload (None: leave 31 out). ``record``: the
    ``sent`` keys ("31", "_m31") to update once Emarsys accepted the contact.
    ``write_magento``: an opt-in the caller must write into Magento (2 = unsubscribe).
    ``conflict``: a consent conflict to report, or None.
    """

    send: int | None = None
    record: dict[str, int | None] = field(default_factory=dict)
    write_magento: int | None = None
    conflict: str | None = None


@dataclass(frozen=True)
class PullDecision:
    """What ``pull-optin`` does with one Emarsys opt-in value (Emarsys -> Magento).

    ``changed`` is False when the value is no change (empty, or magsync's own).
    ``write_magento``: the opt-in to write into Magento; ``send_emarsys``: an opt-out to
    send back to Emarsys (both-sides conflict); ``record``: the ``sent`` keys to update
    so the next sync sends nothing back.
    """

    changed: bool = False
    write_magento: int | None = None
    send_emarsys: int | None = None
    record: dict[str, int | None] = field(default_factory=dict)
    conflict: str | None = None


def parse_optin(value: Any) -> int | None:
    """An opt-in as 1, 2 or None from any spelling Emarsys or the state use."""
    if type(value) is int and 0 <= value <= 2:  # what the state and Magento hold
        return value or 2
    if value is None or isinstance(value, _NotRead):
        return None
    if isinstance(value, bool):
        return 1 if value else 2
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return 1
    if text in ("2", "false", "no", "0"):
        return 2
    return None


def is_first_send(record: ContactRecord | None) -> bool:
    """True when magsync has never synced this contact's opt-in."""
    return record is None or MAGENTO_OPTIN not in record.sent


def needs_emarsys_read(contact: Any, record: ContactRecord | None, *,
                       restart: bool = False) -> bool:
    """Whether the caller must read the contact's Emarsys opt-in before ``decide_send``:
    on a first send (or restart), and when opt-in 1 is about to be sent over a value that
    may be an opt-out magsync did not write."""
    if is_first_send(record) or restart:
        return True
    assert record is not None
    return contact.optin == 1 and _resubscribe_needs_read(record)


def _resubscribe_needs_read(record: ContactRecord) -> bool:
    # Magento went back to subscribed. When Emarsys holds, as far as magsync knows, the
    # opt-out magsync wrote or applied ("31" == 2), opt-in 1 is sent whatever Emarsys
    # holds now: its 2 is then no change on that side, and a 1 or an empty value agrees.
    # The read could change no decision, so it is not made.
    return _recorded(record, MAGENTO_OPTIN) != 1 and _recorded(record, OPTIN) != 2


def decide_send(contact_optin: int | None, record: ContactRecord | None,
                emarsys_optin: EmarsysOptin, *, restart: bool = False) -> OptinDecision:
    """Decide field 31 for one contact about to be sent to Emarsys.

    ``emarsys_optin`` is the current Emarsys value when it was read ("1", "2", None for
    empty) or ``NOT_READ``. Raises ``ValueError`` when a read was needed (see
    ``needs_emarsys_read``) but not done: guessing could manufacture consent.
    """
    m = parse_optin(contact_optin)
    if m is None:
        # Status 2/4: Magento has no definite opt-in. Keep _m31, so a later return to
        # the old state is not mistaken for a change.
        return OptinDecision()
    first = is_first_send(record)
    if isinstance(emarsys_optin, _NotRead) and (first or restart or (
            m == 1 and record is not None and _resubscribe_needs_read(record))):
        raise ValueError("decide_send needs the Emarsys opt-in read before sending "
                         "opt-in 1 or a first send (see needs_emarsys_read)")
    e = parse_optin(emarsys_optin)
    if first:
        return _decide_first(m, e)
    assert record is not None
    magento_changed = m != _recorded(record, MAGENTO_OPTIN)
    if not magento_changed:
        if restart and not (m == 1 and e == 2):
            return OptinDecision(send=m, record={OPTIN: m, MAGENTO_OPTIN: m})
        # An Emarsys opt-out that Magento did not follow yet is pull-optin's to apply:
        # leave "31" as it was so that pull still sees it as a change.
        return OptinDecision()
    if m == 1 and e == 2 and _recorded(record, OPTIN) != 2:
        # Both sides changed and disagree: the opt-out wins on both sides.
        return OptinDecision(
            record={OPTIN: 2, MAGENTO_OPTIN: 2}, write_magento=2,
            conflict="opted out in Emarsys and subscribed in Magento since the last sync; "
                     "the opt-out wins (Magento unsubscribed)")
    return OptinDecision(send=m, record={OPTIN: m, MAGENTO_OPTIN: m})


def _decide_first(m: int, e: int | None) -> OptinDecision:
    if m == 1 and e == 2:
        return _conflict_keep(m, "Emarsys holds opt-out (2) that magsync did not write, "
                                 "Magento says subscribed; opt-in not sent")
    return OptinDecision(send=m, record={OPTIN: m, MAGENTO_OPTIN: m})


def _conflict_keep(m: int, why: str) -> OptinDecision:
    # Recording 31=2 keeps later syncs from retrying; _m31 is Magento's value, so only a
    # real Magento change (which makes magsync write 2 first) can lead to a 1.
    return OptinDecision(record={OPTIN: 2, MAGENTO_OPTIN: m}, conflict=why)


def decide_pull(emarsys_value: Any, record: ContactRecord | None,
                magento_optin: int | None) -> PullDecision:
    """Decide what one Emarsys opt-in change (from getchanges) does to Magento.

    An empty value, or one equal to ``sent["31"]``, is no change: that skips magsync's
    own writes and keeps a subscribe that landed in Magento as "not active" from being
    written again each run.
    """
    e = parse_optin(emarsys_value)
    sent31 = _recorded(record, OPTIN)
    if e is None or e == sent31:
        return PullDecision()
    m = parse_optin(magento_optin)
    last_m = _recorded(record, MAGENTO_OPTIN)
    magento_changed = m is not None and last_m is not None and m != last_m
    if magento_changed and m != e:
        return PullDecision(
            changed=True, write_magento=2 if m != 2 else None,
            send_emarsys=2 if e != 2 else None, record={OPTIN: 2, MAGENTO_OPTIN: 2},
            conflict="opt-in changed on both sides since the last sync and they disagree; "
                     "the opt-out wins on both sides")
    return PullDecision(changed=True, write_magento=e if m != e else None,
                        record={OPTIN: e, MAGENTO_OPTIN: e})


def unapplied_record(emarsys_value: Any, magento_optin: int | None
                     ) -> dict[str, int | None]:
    """The ``sent`` keys to record when an opt-in meant for Magento was not written there
    (the configuration does not allow it, or Magento refused it): Emarsys's value as
    ``"31"`` and Magento's current one as ``"_m31"``. The next run then sees neither side
    as changed: it sends nothing over the Emarsys value (no consent is manufactured from a
    write that did not happen) and does not report the row again."""
    out = {OPTIN: parse_optin(emarsys_value)}
    m = parse_optin(magento_optin)
    if m is not None:
        out[MAGENTO_OPTIN] = m
    return out


def apply_record(record: ContactRecord, updates: dict[str, int | None]) -> ContactRecord:
    """A copy of ``record`` with the decision's ``sent`` updates merged in."""
    sent = {**record.sent, **updates}
    return ContactRecord(key=record.key, customer_id=record.customer_id,
                         subscriber_id=record.subscriber_id, email=record.email,
                         emarsys_id=record.emarsys_id, sent=sent, lists=record.lists)


def _recorded(record: ContactRecord | None, key: str) -> int | None:
    return parse_optin(record.sent.get(key)) if record is not None else None


def settle_unsynced_optin(decision: OptinDecision, magento: int | None,
                           base: ContactRecord | None, emarsys: str | None
                           ) -> OptinDecision:
    """What ``decide_send`` leaves open for a contact whose opt-in was never synced (it
    was sent while its Magento status was pending, 2 or 4).

    Sending it, the Emarsys opt-in just read is remembered, so a later opt-out there is
    known as a change; when Magento then subscribes while Emarsys holds that new opt-out,
    both sides changed and disagree: the opt-out wins on both sides (SPEC section 3).
    """
    unsynced = base is None or is_first_send(base)
    if magento is None:
        if unsynced and (base is None or OPTIN not in base.sent):
            return replace(decision, record={**decision.record,
                                             OPTIN: parse_optin(emarsys)})
        return decision
    if base is None or not unsynced or magento != 1 or decision.conflict is None \
            or parse_optin(base.sent.get(OPTIN)) == 2:
        return decision
    return OptinDecision(
        record={OPTIN: 2, MAGENTO_OPTIN: 2}, write_magento=2,
        conflict="opted out in Emarsys and subscribed in Magento since the last sync; "
                 "the opt-out wins (Magento unsubscribed)")
