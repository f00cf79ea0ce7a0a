"""Where ``pull-optin``'s rows come from, and over which window.

Two exports of the same window: getchanges (the key fields, email and opt-in of every
contact whose email or opt-in changed through the API or a form) and getresponses with
source ``unsubscribe`` (the contacts who used a campaign's unsubscribe link: getchanges
may not list those, API-NOTES). A campaign unsubscribe is confirmed by the contact's
current opt-in (getdata by internal id): one that now holds ``2`` is an opt-out row
like any other; one that subscribed again since is left to getchanges.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from magsync.consent import parse_optin
from magsync.emarsys.contacts import get_data
from magsync.emarsys.exports import (
    DEFAULT_WAIT,
    ExportWait,
    iter_export_rows,
    start_changes_export,
    start_responses_export,
    wait_for_exports,
)
from magsync.emarsys.fields import list_fields
from magsync.errors import ConfigError, FatalRemoteError
from magsync.model import EMAIL, EMAIL_FIELD, OPTIN, OPTIN_FIELD
from magsync.state import StateStore
from magsync.sync.pull_rows import (
    USER_ID,
    ChangeRow,
    Columns,
    find_columns,
    parse_keys,
    parse_row,
)
from magsync.sync.runtime import Runtime
from magsync.sync.tracking import RunCounts

WATERMARK = "pull-optin"
FIRST_RUN_LOOKBACK = timedelta(days=1)
MARGIN = timedelta(days=1)
CET = ZoneInfo("Europe/Berlin")  # getchanges' time_range is in Emarsys's CET dates
EXPORT_POLL_ENV = "MAGSYNC_EXPORT_POLL"
CONFIRM_CHUNK = 1000  # getdata keys per request


def window_start(store: StateStore, start: datetime, since: datetime | None) -> datetime:
    """The watermark (first run: one day back), or ``since`` when that is earlier."""
    mark = store.get_watermark(WATERMARK)
    begin = mark if mark is not None else start - FIRST_RUN_LOOKBACK
    return min(begin, since) if since is not None else begin


def changes_dates(begin: datetime, now: datetime) -> tuple[date, date]:
    """getchanges' ``[begin - 1 day, today + 1 day]`` as CET dates (a day of margin on
    each side covers the zone and Emarsys's own delay)."""
    return (begin - MARGIN).astimezone(CET).date(), (now + MARGIN).astimezone(CET).date()


def responses_window(first: date, last: date) -> tuple[datetime, datetime]:
    """The same days for getresponses, which takes CET date-times: ``[first 00:00,
    the day after last 00:00)``."""
    return datetime.combine(first, time()), datetime.combine(last + timedelta(days=1), time())


def export_wait(wait: ExportWait | None) -> ExportWait:
    """How to poll the exports: ``wait``, ``$MAGSYNC_EXPORT_POLL`` or the default."""
    if wait is not None:
        return wait
    raw = os.environ.get(EXPORT_POLL_ENV, "").strip()
    if not raw:
        return DEFAULT_WAIT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 300:
        raise ConfigError(f"${EXPORT_POLL_ENV} must be a number of seconds (0..300), "
                          f"not {raw!r}")
    return replace(DEFAULT_WAIT, first=seconds, most=seconds)


def export_fields(rt: Runtime) -> list[int]:
    """Both key fields, the email and the opt-in (SPEC 4)."""
    m = rt.mapping
    return [m.customer_key_field, m.subscriber_key_field, EMAIL_FIELD, OPTIN_FIELD]


@dataclass(frozen=True)
class Exports:
    """The two exports of one run, started together: Emarsys prepares them side by
    side, so the run waits for the slower one, not for both in a row."""

    changes: int
    responses: int


def start_exports(rt: Runtime, first: date, last: date, wait: ExportWait) -> Exports:
    """Start the getchanges and getresponses exports of ``[first, last]`` and wait
    until both are done."""
    fields = export_fields(rt)
    start, end = responses_window(first, last)
    exports = Exports(start_changes_export(rt.emarsys, first, last, fields),
                      start_responses_export(rt.emarsys, start, end, fields))
    wait_for_exports(rt.emarsys, [exports.changes, exports.responses], wait)
    return exports


def iter_changes(rt: Runtime, export_id: int, wait: ExportWait
                 ) -> Generator[ChangeRow, None, None]:
    """The getchanges rows of a ready export, streamed (closing this generator ends the
    download)."""
    cols: Columns | None = None
    rows = iter_export_rows(rt.emarsys, export_id, wait)
    try:
        for row in rows:
            if cols is None:
                cols = _columns(rt, row)
            yield parse_row(row, cols)
    finally:
        rows.close()


def _columns(rt: Runtime, first_row: dict[str, str]) -> Columns:
    names = {f.id: f.name for f in list_fields(rt.emarsys)}
    m = rt.mapping
    return find_columns(first_row.keys(), names, m.customer_key_field,
                        m.subscriber_key_field)


def iter_campaign_optouts(rt: Runtime, export_id: int, wait: ExportWait,
                          counts: RunCounts) -> Generator[ChangeRow, None, None]:
    """The campaign unsubscribes of a ready export whose contact holds opt-in ``2``
    now, as rows (each contact once); ``counts`` gets ``campaign_unsubscribes``."""
    seen: set[str] = set()
    batch: list[str] = []
    rows = iter_export_rows(rt.emarsys, export_id, wait)
    try:
        for row in rows:
            if USER_ID not in row:
                raise FatalRemoteError("the Emarsys getresponses export has no user_id "
                                       f"column (columns: {list(row)})", service="Emarsys")
            uid = (row[USER_ID] or "").strip()
            if uid and uid not in seen:
                seen.add(uid)
                batch.append(uid)
            if len(batch) >= CONFIRM_CHUNK:
                yield from _confirm(rt, batch, counts)
                batch = []
    finally:
        rows.close()
    yield from _confirm(rt, batch, counts)


def _confirm(rt: Runtime, user_ids: list[str], counts: RunCounts) -> Iterator[ChangeRow]:
    """The contacts' current values (getdata by internal id): opt-outs as rows."""
    if not user_ids:
        return
    counts.add("campaign_unsubscribes", len(user_ids))
    m = rt.mapping
    found = get_data(rt.emarsys, "id", user_ids, export_fields(rt))
    for contact in found.result:
        if parse_optin(contact.get(OPTIN)) != 2:
            continue  # subscribed again since: getchanges reports that
        yield _campaign_row(contact, str(m.customer_key_field), str(m.subscriber_key_field))


def _campaign_row(contact: dict[str, Any], customer_key: str, subscriber_key: str
                  ) -> ChangeRow:
    ids, bad = parse_keys("" if value is None or value is False else str(value).strip()
                          for value in (contact.get(customer_key), contact.get(subscriber_key)))
    email = contact.get(EMAIL)
    return ChangeRow(ids[0], ids[1], "2", bad, user_id=str(contact.get("id") or ""),
                     email="" if not email else str(email).strip())
