"""Contact-list membership that the upserts did not settle (SPEC 3, contact lists).

A contact joins its lists with the upsert that creates or updates it (``contact_list_id``,
see ``jobs.py``); an upsert carries one list, so a customer with a subscriber row joins
the second one later, as does a contact whose list call failed, and every contact that
belongs on a list Emarsys lost and magsync created again. ``join_owed_lists`` (the end of
``export-initial`` and ``sync-background``) finds them all in the state file and adds
them 10,000 to a request. ``metadata.bind_lists`` records which list id the recorded memberships
mean, and drops them when a run finds the list under another id.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from magsync.emarsys.client import EmarsysApiError
from magsync.emarsys.contacts import MAX_LIST_ADD, NO_SUCH_LIST, add_to_list
from magsync.errors import MagsyncError
from magsync.model import LIST_ROLES
from magsync.state import StateStore
from magsync.sync.items import Item, Job
from magsync.util.logs import get_logger

if TYPE_CHECKING:
    from magsync.sync.runtime import Runtime
    from magsync.sync.tracking import RunCounts

log = get_logger("sync")

# (list role, kind of contact): customers join the customers list; customers with a
# subscriber row and guests join the subscribers list.
OWED = (("customers", "c"), ("subscribers", "c"), ("subscribers", "s"))


class Joining(Protocol):
    """A job's plan for one contact, as far as its list calls go (``jobs._Plan``)."""

    item: Item
    send: Any  # diff.Send: its join_lists are the roles still to record
    carried: str | None
    list_failed: bool


def join_owed_lists(rt: Runtime, store: StateStore, counts: RunCounts) -> None:
    """Add every contact the state file holds to each list it belongs on but is not
    recorded in; ``list_joins`` counts them (a dry run only counts)."""
    for role, kind in OWED:
        key_field = rt.mapping.customer_key_field if kind == "c" \
            else rt.mapping.subscriber_key_field
        after = ""
        while members := store.missing_list_members(role, kind, after=after,
                                                    limit=MAX_LIST_ADD):
            after = members[-1].key
            list_id = rt.list_ids.get(role)
            if rt.dry_run or list_id is None:
                counts.add("list_joins", len(members))
                continue
            errors = _add(rt, role, list_id, key_field, [m.key_value for m in members])[1]
            joined = [m for m in members if m.key_value not in errors]
            store.add_list_role(joined, role)
            counts.add("list_joins", len(joined))
            if errors:
                counts.add("list_join_failed", len(members) - len(joined))
                value, error = next(iter(errors.items()))
                log.warning("Emarsys did not add %d contact(s) to the %s list (e.g. %s: "
                            "%s); the next sync-background tries again",
                            len(members) - len(joined), role, value, error)


def join_lists(rt: Runtime, job: Job, plans: list[Joining]) -> None:
    """Add accepted contacts to the lists they join and their upsert did not carry; a
    failed add leaves the role unrecorded, so the next run tries again. A job that
    defers them leaves them unrecorded for the run's end (``lists.join_owed_lists``)."""
    if job.defer_lists:
        for p in plans:
            for role in p.send.join_lists - {p.carried}:
                p.send = _without_role(p.send, role)
            if not p.send.join_lists and set(p.send.payload) == {str(job.key_field)}:
                p.send = None  # only a list call was owed: nothing sent now
        return
    adds: list[tuple[str, list[Joining], int]] = []
    for role in LIST_ROLES:
        members = [p for p in plans if role in p.send.join_lists and p.carried != role]
        list_id = rt.list_ids.get(role)
        if members and list_id is not None:
            adds.append((role, members, list_id))
    results = rt.side_by_side(*(
        functools.partial(_add_members, rt, role, list_id, job.key_field,
                          [p.item.contact.key_value for p in members])
        for role, members, list_id in adds))
    failure: MagsyncError | None = None
    for (role, members, _), result in zip(adds, results, strict=True):
        if isinstance(result, MagsyncError):
            failure = failure or result
            for p in members:
                p.send, p.list_failed = _without_role(p.send, role), True
            continue
        for p in members:
            if p.item.contact.key_value in result[1]:
                p.send = _without_role(p.send, role)
    if failure is not None:  # after every role of every add is settled
        raise failure


def _add_members(rt: Runtime, role: str, list_id: int, key_field: int, keys: list[str]
                 ) -> tuple[int, dict[str, Any]] | MagsyncError:
    """``_add``, its failure returned rather than raised (the other adds of the job still
    count)."""
    try:
        return _add(rt, role, list_id, key_field, keys)
    except MagsyncError as exc:
        return exc


def _add(rt: Runtime, role: str, list_id: int, key_field: int, values: list[str]
         ) -> tuple[int, dict[str, Any]]:
    """One list add: (inserted, errors by key value); a list Emarsys lost (3004) is found
    or created again first."""
    try:
        return add_to_list(rt.emarsys, list_id, key_field, values)
    except EmarsysApiError as exc:
        if exc.reply_code != NO_SUCH_LIST:
            raise
    return add_to_list(rt.emarsys, rt.replace_list(role, list_id), key_field, values)


def _without_role(send: Any, role: str) -> Any:
    return replace(send, join_lists=send.join_lists - {role})
