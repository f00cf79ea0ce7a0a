"""getchanges and getresponses exports of the sandbox Emarsys account.

``POST /contact/getchanges`` snapshots, at request time, the contacts whose e-mail or
opt-in changed through the API or a UI edit within the requested CET days (UI imports
are the known blind spot). ``POST /email/getresponses`` snapshots the contacts with a
campaign response (unsubscribe, complaint, bounce) in a CET date-time window. Either
export then reports "scheduled"/"in progress" for a configurable number of status polls
before it is "done", so clients must really poll, and is read the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from magsync.sandbox.emarsys.data import RESPONSE_SOURCES, EmarsysAccount, RequestFailed
from magsync.sandbox.emarsys.fields import render_for_export

CET = ZoneInfo("Europe/Berlin")
FIRST_EXPORT_ID = 2140
MAX_EXPORT_FIELDS = 20
DONE = "done"


@dataclass
class Export:
    """One export job and its (already computed) rows."""

    id: int
    header: list[str]
    rows: list[list[str]]
    delimiter: str = ","
    with_header: bool = True
    polls_until_ready: int = 2
    polls: int = 0
    expired: bool = False
    created: str = ""

    def poll(self) -> str:
        """Status for one ``GET /export/{id}``; each call counts as a poll."""
        self.polls += 1
        if self.polls > self.polls_until_ready:
            return DONE
        return "scheduled" if self.polls == 1 else "in progress"

    @property
    def ready(self) -> bool:
        """Whether a status poll has already reported the export done."""
        return self.polls > self.polls_until_ready

    def render(self, offset: int, limit: int | None) -> str:
        """CSV text of rows ``offset``..``offset+limit`` (header first on every page)."""
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\n")
        if self.with_header:
            writer.writerow(self.header)
        end = None if limit is None else offset + limit
        writer.writerows(self.rows[offset:end])
        return out.getvalue()


@dataclass
class ExportStore:
    """Export jobs by id."""

    polls_until_ready: int = 2
    exports: dict[int, Export] = field(default_factory=dict)
    _next_id: int = FIRST_EXPORT_ID
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_changes_export(self, account: EmarsysAccount, body: Any) -> Export:
        """Validate a getchanges body and snapshot its result; raises RequestFailed."""
        if not isinstance(body, dict):
            raise RequestFailed(400, 10001, "The request body must be a JSON object")
        start, end = parse_time_range(body.get("time_range"))
        field_ids = _parse_fields(account, body.get("contact_fields"))
        delimiter = str(body.get("delimiter") or ",")
        if delimiter not in (",", ";"):
            raise RequestFailed(400, 10001, f"Invalid delimiter: {delimiter!r}")
        with account.lock:
            changed = [c.contact_id for c in account.changes if start <= c.at < end]
            header, rows = _build_rows(account, field_ids, changed)
        return self._add(account, header, rows, delimiter,
                         str(body.get("add_field_names_header", 1)) != "0")

    def create_responses_export(self, account: EmarsysAccount, body: Any) -> Export:
        """Validate a getresponses body and snapshot its result; raises RequestFailed."""
        if not isinstance(body, dict):
            raise RequestFailed(400, 10001, "The request body must be a JSON object")
        start, end = parse_time_window(body.get("time_range"))
        sources = _parse_sources(body.get("sources"))
        field_ids = _parse_fields(account, body.get("contact_fields"))
        with account.lock:
            hits = [r.contact_id for r in account.responses
                    if r.source in sources and start <= r.at < end]
            header, rows = _build_rows(account, field_ids, hits)
        return self._add(account, header, rows, ",", True)

    def _add(self, account: EmarsysAccount, header: list[str], rows: list[list[str]],
             delimiter: str, with_header: bool) -> Export:
        with self._lock:
            export = Export(self._next_id, header, rows, delimiter, with_header,
                            self.polls_until_ready,
                            created=dt.datetime.fromtimestamp(account.clock(), dt.timezone.utc)
                            .strftime("%Y-%m-%d %H:%M:%S"))
            self.exports[export.id] = export
            self._next_id += 1
        return export

    def get(self, export_id: int) -> Export:
        """The export, or RequestFailed 404 when there is none with that id."""
        export = self.exports.get(export_id)
        if export is None:
            raise RequestFailed(404, 4001, f"Export not found: {export_id}")
        return export

    def status_json(self, export_id: int) -> dict[str, Any]:
        """``GET /export/{id}`` data (counts as one poll)."""
        with self._lock:
            export = self.get(export_id)
            status = "error" if export.expired else export.poll()
            return {"id": str(export.id), "status": status, "type": "contactlist",
                    "created": export.created, "file_name": f"export_{export.id}.csv",
                    "distribution_method": "local"}

    def data_csv(self, export_id: int, offset: int, limit: int | None) -> str:
        """``GET /export/{id}/data``: 404/4005 while in progress, 410/4003 once expired."""
        with self._lock:
            export = self.get(export_id)
            if export.expired:
                raise RequestFailed(410, 4003, f"Export {export_id} has expired")
            if not export.ready:
                raise RequestFailed(404, 4005, f"Export {export_id} is still in progress")
            return export.render(offset, limit)

    def expire(self, export_id: int) -> None:
        """Test helper: the export's file is gone (410/4003 from now on)."""
        with self._lock:
            self.get(export_id).expired = True


def parse_time_range(value: Any) -> tuple[float, float]:
    """["YYYY-MM-DD", "YYYY-MM-DD"] (CET dates) -> [start, end) as unix times.

    The end day counts whole: the window closes at midnight after it.
    """
    if not isinstance(value, list) or len(value) != 2:
        raise RequestFailed(400, 10001, "time_range must be [start date, end date]")
    try:
        start, end = (dt.date.fromisoformat(str(v)) if len(str(v)) == 10 else None
                      for v in value)
    except ValueError:
        start = end = None
    if start is None or end is None:
        raise RequestFailed(400, 10001, f"time_range takes dates only (YYYY-MM-DD): {value}")
    if start >= end:
        raise RequestFailed(400, 10001, f"time_range start must be before its end: {value}")
    return _cet_midnight(start), _cet_midnight(end + dt.timedelta(days=1))


def parse_time_window(value: Any) -> tuple[float, float]:
    """["YYYY-MM-DD HH:MM:SS", "YYYY-MM-DD HH:MM:SS"] -> [start, end) as unix times.

    Read as CET like getchanges' dates: the zone is undocumented for getresponses."""
    if not isinstance(value, list) or len(value) != 2:
        raise RequestFailed(400, 10001, "time_range must be [start, end]")
    try:
        start, end = (dt.datetime.strptime(str(v), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CET)
                      .timestamp() for v in value)
    except ValueError:
        raise RequestFailed(400, 10001, f"time_range takes YYYY-MM-DD HH:MM:SS: {value}"
                            ) from None
    if start >= end:
        raise RequestFailed(400, 10001, f"time_range start must be before its end: {value}")
    return start, end


def _parse_sources(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise RequestFailed(400, 10001, "sources must be a non-empty list")
    unknown = [s for s in value if s not in RESPONSE_SOURCES]
    if unknown:
        raise RequestFailed(400, 10001, f"Invalid sources: {unknown}; the sandbox knows "
                                        f"{sorted(RESPONSE_SOURCES)}")
    return frozenset(value)


def _cet_midnight(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=CET).timestamp()


def _parse_fields(account: EmarsysAccount, value: Any) -> list[int]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_EXPORT_FIELDS:
        raise RequestFailed(400, 10001,
                            f"contact_fields must list 1 to {MAX_EXPORT_FIELDS} field ids")
    ids: list[int] = []
    for item in value:
        text = str(item)
        if not text.isdecimal() or int(text) not in account.fields:
            raise RequestFailed(400, 2006, f"Invalid field id: {item}")
        ids.append(int(text))
    return ids


def _build_rows(account: EmarsysAccount, field_ids: list[int], contact_ids: list[int]
                ) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an export: each contact still in the account once, first seen
    first, with its current values (the caller holds the account lock)."""
    fields = [account.fields[f] for f in field_ids]
    seen = dict.fromkeys(cid for cid in contact_ids if cid in account.contacts)
    rows = [[str(cid), *(render_for_export(f, account.contacts[cid].get(f.id))
                         for f in fields)] for cid in seen]
    return ["user_id", *(f.name for f in fields)], rows
