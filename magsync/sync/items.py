"""What travels through the send pipeline: an ``Item`` per contact, grouped into
``Job``s for the workers, coming back as ``Outcome``s for the main thread to commit."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from magsync.model import Contact, ContactRecord

if TYPE_CHECKING:  # a run with nothing to send plans nothing: diff is not loaded
    from magsync.diff import Send


@dataclass(eq=False, slots=True)
class Item:
    """One contact on its way through the pipeline."""

    contact: Contact
    record: ContactRecord | None
    lane: Hashable = None
    token: Hashable = None
    inherit: ContactRecord | None = None  # the guest record a registered customer takes over
    send: Send | None = None
    decided: bool = False
    decision: object = None
    reports: list[tuple[str, str | None, str]] = field(default_factory=list)


@dataclass(eq=False)
class Job:
    """Items of one key kind for one worker; ``list_role``: the list its upsert carries
    (``contact_list_id``) for the items that join it; ``defer_lists``: the other lists
    its items join are left to the run's end (``lists.join_owed_lists``), not added here."""

    items: list[Item]
    key_field: int
    restart: bool = False
    list_role: str | None = None
    defer_lists: bool = False


@dataclass(eq=False, slots=True)
class Outcome:
    """What happened to one contact; ``record`` is saved, ``error`` queues it."""

    item: Item
    status: str
    record: ContactRecord | None = None
    error: str | None = None
    drop_key: str | None = None
    reports: list[tuple[str, str | None, str]] = field(default_factory=list)
    extra_counts: list[str] = field(default_factory=list)
    # False: saved, but its page must not count as done (a list call is still owed, so
    # a checkpoint may not pass it and the next run reads it again)
    done: bool = True


@dataclass(eq=False)
class JobResult:
    """A job's outcomes; ``error``: what stopped the job after those (an outage), for
    the engine to raise once they are committed."""

    outcomes: list[Outcome]
    samples: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    # set by the engine: its records are in the state file / its counts are taken (a
    # signal that stops a commit half-way leaves the rest for the engine's way out)
    committed: bool = False
    counted: bool = False
    queue_counts: dict[str, int] = field(default_factory=dict)  # queued/dead, once saved
