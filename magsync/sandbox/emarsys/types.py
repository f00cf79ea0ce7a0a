"""Plain records of the sandbox Emarsys account (see ``emarsys_data``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RequestFailed(Exception):
    """A whole request fails: HTTP ``status`` with Emarsys ``code`` and ``text``."""

    def __init__(self, status: int, code: int, text: str) -> None:
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


class ContactError(Exception):
    """One contact of a batch fails with an Emarsys per-contact ``code``."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


@dataclass(slots=True)  # one per contact written: no __dict__ each
class WriteEntry:
    """The fields one upsert request wrote to one contact; ``seq`` is stamped by the server."""

    contact_id: int
    fields: dict[str, Any]
    seq: int = 0


@dataclass
class ChangeEvent:
    """An e-mail or opt-in change getchanges reports (``source`` "api" or "ui")."""

    at: float
    contact_id: int
    source: str


@dataclass
class ContactList:
    """A contact list and its members' internal ids."""

    id: int
    name: str
    members: set[int] = field(default_factory=set)


@dataclass
class UpsertResult:
    """What an upsert reply carries, plus the write entries for the write log."""

    ids: list[str | int] = field(default_factory=list)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    writes: list[WriteEntry] = field(default_factory=list)


@dataclass
class ResponseEvent:
    """A campaign response ``email/getresponses`` reports (unsubscribe, complaint, bounce)."""

    at: float
    contact_id: int
    source: str


@dataclass
class EditEntry:
    """A change made outside the API (UI, form, import, campaign), for the control plane."""

    at: float
    source: str
    fields: dict[str, Any]
    reported: bool  # whether getchanges lists it (an e-mail or opt-in change it sees)


@dataclass
class DeletionEntry:
    """A contact ``contact/delete`` removed; ``seq`` is stamped by the server."""

    contact_id: int
    key_id: str
    key_value: str
    fields: dict[str, str | None]
    seq: int = 0
