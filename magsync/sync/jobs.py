"""One job of the send pipeline, run in a worker thread: everything Emarsys hears about a
batch of contacts of one key kind.

Order matters: identities first (a registered guest's contact gets the customer id, an
existing key-less contact is adopted), then the upsert keyed on our own key, which carries
the list the job's contacts join (``contact_list_id``), then list calls for any other list
they join (or none: a run that defers them adds them at its end). The job only talks to
the remote systems; it returns outcomes (and the records to save) for the main thread to
commit.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from magsync.consent import (
    OptinDecision,
    decide_send,
    settle_unsynced_optin,
    unapplied_record,
)
from magsync.diff import IdentityPlan, plan_identity, plan_send, record_after_send
from magsync.emarsys.client import EmarsysApiError
from magsync.emarsys.contacts import (
    INVALID_KEY,
    INVALID_LIST,
    error_text,
    get_data,
    upsert_all,
    upsert_batch,
)
from magsync.errors import MagsyncError, RemoteConfigError
from magsync.model import EMAIL_FIELD, OPTIN, OPTIN_FIELD, Contact
from magsync.sync.items import Item, Job, JobResult, Outcome
from magsync.sync.lists import join_lists
from magsync.sync.optin_writer import NOT_APPLIED, MagentoOptinWriter
from magsync.sync.runtime import Runtime

MAX_REQUEST_BYTES = 8 * 1024 * 1024 - 64 * 1024
NOT_FOUND = "2008"
AMBIGUOUS = "2010"
INVALID_VALUE = "2007"  # e.g. a choice id Emarsys no longer has: read the metadata again
FAILED_LOOKUPS = frozenset({"ambiguous", "unanswered"})
MagentoWriter = MagentoOptinWriter


_UNDECIDED = OptinDecision()  # shared: decisions are treated as immutable


@dataclass(eq=False, slots=True)
class _Plan:
    """An item's plan inside the job."""

    item: Item
    identity: IdentityPlan | None = None
    decision: OptinDecision = field(default_factory=lambda: _UNDECIDED)
    send: Any = None
    error: str | None = None
    accepted: bool = False
    list_failed: bool = False  # accepted, but a list call it needed did not go through
    emarsys_id: str | None = None  # the contact's internal id, as the upsert answered
    carried: str | None = None  # the list role its upsert joined (contact_list_id)


def run_job(rt: Runtime, job: Job, writer: MagentoWriter | None) -> JobResult:
    """Plan, send and list one batch; never touches the state file."""
    with rt.request_slots:
        return _run_job(rt, job, writer)


def _run_job(rt: Runtime, job: Job, writer: MagentoWriter | None) -> JobResult:
    plans = [_Plan(it) for it in job.items]
    _read_emarsys(rt, job, plans)
    for p in plans:
        _decide(rt, job, p)
    live = [p for p in plans if p.error is None]
    if rt.dry_run:
        return _dry_result(plans, job)
    try:
        _attach_and_adopt(rt, live)
        sendable = [p for p in live if p.error is None and p.send is not None]
        for p in sendable:
            # Upserted before, only a list call is owed: no upsert to repeat.
            p.accepted = _list_only(job, p)
        _upsert(rt, job, [p for p in sendable if not p.accepted])
        join_lists(rt, job, [p for p in sendable if p.accepted])
    except MagsyncError as exc:
        # An outage (or a refused request) stopped the job: what Emarsys already took
        # is committed all the same, so the next run does not send it again.
        return JobResult([_outcome(rt, p, writer) for p in plans
                          if p.accepted or p.error is not None], error=exc)
    outcomes = [_outcome(rt, p, writer) for p in plans]
    return JobResult(outcomes)


def _list_only(job: Job, p: _Plan) -> bool:
    return (p.item.record is not None and p.item.inherit is None and not job.restart
            and bool(p.send.join_lists) and set(p.send.payload) == {str(job.key_field)})


# -- reading Emarsys ----------------------------------------------------------------------

def _read_emarsys(rt: Runtime, job: Job, plans: list[_Plan]) -> None:
    """getdata for first sends (by email), for guests magsync sent who registered (by
    subscriber id: no other contact can carry one, see ``_first_identity``) and for opt-in
    checks (by their own key).

    A per-key error other than 2008 (not found) is an answer too: 2010 (several contacts
    hold the key) makes the contact ambiguous, any other means the lookup did not
    answer; either way the contact is queued with it, never created on a guess.
    """
    m = rt.mapping
    fields = [m.customer_key_field, m.subscriber_key_field, OPTIN_FIELD, EMAIL_FIELD]
    # Contacts never sent are looked up by email (rule 6), registered guests by their
    # subscriber id (rule 4); the others (also under --restart) by their own key, for
    # their current opt-in: their email may be on several contacts (2010) without that
    # making them ambiguous.
    firsts = [p for p in plans if not p.item.decided and p.item.inherit is None
              and p.item.record is None]
    inherits = [p for p in plans if not p.item.decided and p.item.inherit is not None]
    first_ids = {id(p) for p in firsts}
    checks = [p for p in plans if not p.item.decided and id(p) not in first_ids
              and p.item.inherit is None]
    sub_ids = {str(p.item.contact.subscriber_id) for p in inherits
               if p.item.contact.subscriber_id is not None}
    email_keys = {_email_key(p.item.contact) for p in firsts if p.item.contact.email}
    own_keys = {p.item.contact.key_value for p in checks}
    # The reads are independent: side by side, a job waits one round trip, not three.
    reads = [(m.subscriber_key_field, sub_ids, False), (3, email_keys, True),
             (job.key_field, own_keys, False)]
    found = iter(rt.side_by_side(*(functools.partial(_rows_by, rt, key, values, fields,
                                                     fold=fold)
                                   for key, values, fold in reads if values)))
    by_sub, by_email, own = (next(found) if values else _Found()
                             for _, values, _ in reads)
    for p in firsts:
        p.identity = _first_identity(p.item.contact, by_email)
    for p in checks:
        key = p.item.contact.key_value
        p.identity = own.failure(key, p.item.contact.key) or _existing(own.rows.get(key))
    for p in inherits:
        sid = str(p.item.contact.subscriber_id)
        p.identity = by_sub.failure(sid, f"subscriber id {sid}") \
            or _existing(by_sub.rows.get(sid))


def _first_identity(c: Contact, by_email: _Found) -> IdentityPlan:
    """Rules 4 and 6 from the email lookup, unless it answered with an error. Its rows
    that carry the contact's subscriber id count as found by subscriber id: a guest
    upserted by a run killed before it recorded it, who registered before the next run."""
    email = _email_key(c) if c.email else None
    failed = by_email.failure(email, f"email {c.email}")
    if failed is not None:
        return failed
    rows = by_email.rows.get(email, []) if email else []
    sid = str(c.subscriber_id) if c.subscriber_id is not None else None
    subscriber_key = str(c.key_fields[1])
    by_sub = [r for r in rows if sid is not None
              and str(r.get(subscriber_key) or "").strip() == sid] or None
    return plan_identity(c, by_sub, rows)


def _email_key(c: Contact) -> str:
    return (c.email or "").strip().lower()


def _existing(rows: list[dict[str, Any]] | None) -> IdentityPlan:
    """A contact magsync already sent: only its current opt-in matters."""
    optin = rows[0].get(OPTIN) if rows else None
    return IdentityPlan("existing", emarsys_id=str(rows[0].get("id")) if rows else None,
                        emarsys_optin=None if optin in (None, "") else str(optin))


@dataclass
class _Found:
    """One getdata read: rows by key value, and the per-key errors other than 2008."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)

    def failure(self, key: str | None, what: str) -> IdentityPlan | None:
        """The plan of a contact whose lookup by ``key`` Emarsys answered with an
        error: ambiguous for 2010, unanswered for anything else; None when it had none."""
        errors = self.errors.get(key) if key is not None else None
        if not errors:
            return None
        text = error_text(errors)
        if AMBIGUOUS in errors:
            return IdentityPlan("ambiguous", reason=f"{what} matches several Emarsys "
                                                    f"contacts (Emarsys error {text})")
        return IdentityPlan("unanswered", reason=f"Emarsys did not answer the lookup of "
                                                 f"{what} (error {text}); not sent on a "
                                                 "guess")


def _rows_by(rt: Runtime, key_field: int, values: set[str], fields: list[int], *,
             fold: bool = False) -> _Found:
    if not values:
        return _Found()
    result = get_data(rt.emarsys, key_field, sorted(values), fields)
    out = _Found(errors=result.errors_by_key(fold=fold, ignore=(NOT_FOUND,)))
    for row in result.result:
        value = str(row.get(str(key_field)) or "")
        out.rows.setdefault(value.strip().lower() if fold else value, []).append(row)
    return out


# -- deciding -------------------------------------------------------------------------------

def _decide(rt: Runtime, job: Job, p: _Plan) -> None:
    item = p.item
    if item.decided:
        p.decision = item.decision  # type: ignore[assignment]
        p.send = item.send
        return
    if p.identity is not None and p.identity.kind in FAILED_LOOKUPS:
        p.error = p.identity.reason or "ambiguous Emarsys contact"
        return
    base = item.record if item.record is not None else item.inherit
    optin = p.identity.emarsys_optin if p.identity is not None else None
    p.decision = decide_send(item.contact.optin, base, optin, restart=job.restart)
    if not job.restart:
        p.decision = settle_unsynced_optin(p.decision, item.contact.optin, base, optin)
    p.send = plan_send(item.contact, base, p.decision, on_empty=rt.mapping.on_empty,
                       restart=job.restart)


# -- writing Emarsys --------------------------------------------------------------------------

def _attach_and_adopt(rt: Runtime, plans: list[_Plan]) -> None:
    """Rule 4 (attach the customer id to the contact found by subscriber id) and rule 6
    (adopt a key-less contact by its internal id), before any upsert on our key."""
    m = rt.mapping
    attach = [p for p in plans if p.item.inherit is not None
              or (p.identity is not None and p.identity.kind == "attach")]
    adopt = [p for p in plans if p.identity is not None and p.identity.kind == "adopt"]
    if attach:
        key = str(m.subscriber_key_field)
        bodies = [{key: str(p.item.contact.subscriber_id),
                   str(m.customer_key_field): str(p.item.contact.customer_id)}
                  for p in attach]
        result = upsert_batch(rt.emarsys, key, bodies, create=False)
        for p in attach:
            errors = result.errors.get(str(p.item.contact.subscriber_id))
            if errors and NOT_FOUND not in errors:
                p.error = error_text(errors)
            # 2008: the guest's contact is gone from Emarsys; the upsert creates one.
    if adopt:
        bodies = [dict(p.identity.update or {}) for p in adopt if p.identity is not None]
        result = upsert_batch(rt.emarsys, "id", bodies, create=False)
        for p in adopt:
            assert p.identity is not None
            errors = result.errors.get(str(p.identity.emarsys_id))
            if errors:
                p.error = error_text(errors)


def _upsert(rt: Runtime, job: Job, plans: list[_Plan]) -> None:
    """The upserts: the plans that join the job's list carry it on the request (SPEC 3);
    a list Emarsys lost (2020) is found or created again and the request sent again."""
    role = job.list_role
    joining = [p for p in plans if role is not None and role in p.send.join_lists]
    if len(joining) < len(plans):
        carried = {id(p) for p in joining}
        _upsert_batches(rt, job, [p for p in plans if id(p) not in carried], None)
    if not joining or role is None:
        return
    list_id = rt.list_ids.get(role)
    try:
        _upsert_batches(rt, job, joining, list_id)
    except EmarsysApiError as exc:
        if exc.reply_code != INVALID_LIST or list_id is None:
            raise
        list_id = rt.replace_list(role, list_id)
        _upsert_batches(rt, job, [p for p in joining if not p.accepted and p.error is None],
                        list_id)
    for p in joining:
        if p.accepted and list_id is not None:
            p.carried = role


def _upsert_batches(rt: Runtime, job: Job, plans: list[_Plan], list_id: int | None
                    ) -> None:
    if not plans:
        return
    key = str(job.key_field)
    by_key = {str(p.send.payload[key]): p for p in plans}
    payloads = [p.send.payload for p in plans]
    try:
        for batch, result in upsert_all(rt.emarsys, key, payloads,
                                        batch_size=rt.cfg.emarsys.batch_size,
                                        max_bytes=MAX_REQUEST_BYTES,
                                        contact_list_id=list_id):
            _settle_batch(rt, batch, key, by_key, result)
    except RemoteConfigError as exc:
        if exc.code in INVALID_KEY:  # a field Emarsys no longer has? read them again
            rt.recheck_fields(exc)
        raise


def _settle_batch(rt: Runtime, batch: list[dict[str, Any]], key: str,
                  by_key: dict[str, _Plan], result: Any) -> None:
    ids = _ids_in_order(batch, key, result.ids, result.errors)
    for contact in batch:
        p = by_key[str(contact[key])]
        errors = result.errors.get(str(contact[key]))
        if errors:
            p.error = error_text(errors)
            if INVALID_VALUE in errors:
                rt.metadata_stale = True  # a choice id may have gone: read them next run
        else:
            p.accepted = True
            p.emarsys_id = next(ids, None)


def _ids_in_order(batch: list[dict[str, Any]], key: str, ids: list[str],
                  errors: dict[str, dict[str, str]]) -> Iterator[str]:
    """The upsert's ``ids``, one per accepted contact in the batch's order; nothing when
    their number does not match (then no id is guessed)."""
    accepted = sum(1 for c in batch if str(c[key]) not in errors)
    return iter(ids if len(ids) == accepted else [])


# -- results ----------------------------------------------------------------------------------

def _outcome(rt: Runtime, p: _Plan, writer: MagentoWriter | None) -> Outcome:
    item = p.item
    c = item.contact
    reports: list[tuple[str, str | None, str]] = []
    if p.error is not None:
        if p.identity is not None and p.identity.kind == "ambiguous":
            reports.append(("ambiguous_email", c.key, p.error))
        elif p.identity is not None and p.identity.kind == "unanswered":
            reports.append(("lookup_failed", c.key, p.error))
        return Outcome(item, "failed", error=p.error, reports=reports)
    extra: list[str] = []
    if p.decision.conflict:
        reports.append(("consent_conflict", c.key, p.decision.conflict))
        extra.append("conflicts")
    problem = None
    optin = p.decision.write_magento
    if optin is not None and writer is not None:
        refusal = writer.guest_refusal(optin) if c.customer_id is None else None
        if refusal is not None:
            # The configuration does not let magsync write it, now or on a retry: Magento
            # still holds its opt-in, so record that (else the next run would take it for
            # a change in Magento and send it over the Emarsys opt-out).
            reports.append(("magento_write_failed", c.key, NOT_APPLIED + refusal))
            p.decision = replace(p.decision, record=unapplied_record(optin, c.optin))
        else:
            problem = writer(c, optin)
            if problem:
                reports.append(("magento_write_failed", c.key, problem))
    base = item.record if item.record is not None else item.inherit
    emarsys_id = p.emarsys_id or (p.identity.emarsys_id if p.identity is not None else None)
    # An opt-out Magento did not take is not recorded as in sync (that would read as a
    # Magento subscribe next time, and send opt-in 1): the contact is queued instead,
    # and decided again when it is retried.
    decision = OptinDecision() if problem else p.decision
    record = record_after_send(c, base, p.send, decision, emarsys_id)
    error = f"Magento did not take the opt-out: {problem}" if problem else None
    if p.send is None:
        return Outcome(item, "failed" if error else "unchanged", record=record, error=error,
                       reports=reports, extra_counts=extra)
    status = _status(p)
    if status in ("adopted", "attached"):
        extra.append("updated")
    drop = item.inherit.key if item.inherit is not None else None
    if p.identity is not None and p.identity.kind == "attach":
        drop = f"s:{c.subscriber_id}"
    return Outcome(item, "failed" if error else status, record=record, error=error,
                   reports=reports, extra_counts=["sent", *extra], drop_key=drop,
                   done=not p.list_failed)


def _status(p: _Plan) -> str:
    if p.item.inherit is not None:
        return "attached"
    if p.identity is not None and p.identity.kind in ("adopt", "attach"):
        return "adopted" if p.identity.kind == "adopt" else "attached"
    if p.send is not None and p.send.first_send and (
            p.identity is None or p.identity.emarsys_id is None):
        return "created"
    return "updated"


def _dry_result(plans: list[_Plan], job: Job) -> JobResult:
    outcomes: list[Outcome] = []
    samples: list[dict[str, Any]] = []
    for p in plans:
        if p.error is not None:
            outcomes.append(Outcome(p.item, "failed", error=p.error))
        elif p.send is None:
            outcomes.append(Outcome(p.item, "unchanged"))
        else:
            outcomes.append(Outcome(p.item, _status(p), extra_counts=["sent"]))
            if len(samples) < 3:
                samples.append({"key_id": str(job.key_field), "contact": p.send.payload})
    return JobResult(outcomes, samples)

