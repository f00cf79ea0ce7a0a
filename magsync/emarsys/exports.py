"""getchanges: ask Emarsys which contacts changed, wait for the export, read its CSV.

The export runs asynchronously: ``POST /contact/getchanges`` starts it, ``GET
/export/{id}`` reports its status, ``GET /export/{id}/data`` serves the CSV once done
(404/4005 until then, even when the status already says done, so both are waited for).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import requests

from magsync.emarsys.client import SERVICE, EmarsysClient
from magsync.errors import RemoteError, RetriableError

READY = frozenset({"done", "ready"})
IN_PROGRESS_CODE = 4005
EXPIRED_CODE = 4003


@dataclass(frozen=True)
class ExportWait:
    """How to wait for an export: poll delays grow from ``first`` to ``most`` seconds."""

    timeout: float = 900.0
    first: float = 1.0
    most: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


DEFAULT_WAIT = ExportWait()


def start_changes_export(client: EmarsysClient, start: date, end: date,
                         fields: Iterable[int]) -> int:
    """Start a getchanges export of ``fields`` over the CET dates [start, end]."""
    if start >= end:
        raise ValueError("getchanges needs a start date before its end date")
    data = client.call("POST", "/contact/getchanges", json={
        "distribution_method": "local", "origin": "all", "origin_id": "0",
        "time_range": [start.isoformat(), end.isoformat()],
        "contact_fields": [int(f) for f in fields], "delimiter": ",",
        "add_field_names_header": 1, "language": "en"})
    return int(data["id"])


def wait_for_export(client: EmarsysClient, export_id: int, wait: ExportWait | None = None
                    ) -> None:
    """Poll ``GET /export/{id}`` until it is done; ``RemoteError`` on error or timeout."""
    wait = wait or DEFAULT_WAIT
    started = wait.clock()
    delay = wait.first
    while True:
        data = client.call("GET", f"/export/{export_id}") or {}
        status = str(data.get("status") or "").lower()
        if status in READY:
            return
        if status == "error":
            raise RemoteError(f"Emarsys export {export_id} failed (status error)",
                              service=SERVICE, hint="run again to start a new export")
        delay = _pause(wait, started, delay, export_id, status)


def _pause(wait: ExportWait, started: float, delay: float, export_id: int,
           status: str) -> float:
    """Sleep before the next poll, or give up once ``wait.timeout`` would pass."""
    spent = wait.clock() - started
    if spent + delay > wait.timeout:
        raise RetriableError(
            f"Emarsys export {export_id} was not ready after {spent:.0f} s "
            f"(last status {status or 'unknown'!r})", service=SERVICE,
            hint="Emarsys may be busy; the next run will ask again")
    wait.sleep(delay)
    return min(wait.most, delay * 2)


def iter_export_rows(client: EmarsysClient, export_id: int, wait: ExportWait | None = None
                     ) -> Iterator[dict[str, str]]:
    """The export's CSV rows as dicts by header (``user_id`` first), streamed."""
    wait = wait or DEFAULT_WAIT
    started = wait.clock()
    delay = wait.first
    while True:
        resp = client.http.request("GET", f"/export/{export_id}/data", stream=True)
        if resp.status_code == 200:
            break
        code = _reply_code(resp)
        if resp.status_code == 404 and code in (IN_PROGRESS_CODE, None):
            delay = _pause(wait, started, delay, export_id, "in progress")
            continue
        client.unwrap(resp)  # raises the typed error (410/4003 expired, ...)
        raise RemoteError(f"Emarsys export {export_id}: unexpected "
                          f"{client.http.describe(resp)}", service=SERVICE,
                          status=resp.status_code, code=code)
    try:
        yield from parse_export_csv(_text_lines(resp))
    finally:
        resp.close()


def _reply_code(resp: requests.Response) -> int | None:
    try:
        return int(resp.json()["replyCode"])
    except (ValueError, KeyError, TypeError):
        return None


def _text_lines(resp: requests.Response) -> Iterator[str]:
    raw: Any = resp.raw  # urllib3's response is a readable binary stream
    raw.decode_content = True
    raw.auto_close = False  # else it reports "closed" at EOF and TextIOWrapper fails
    text = io.TextIOWrapper(raw, encoding=resp.encoding or "utf-8", newline="")
    yield from text


def parse_export_csv(lines: Iterable[str], delimiter: str = ",") -> Iterator[dict[str, str]]:
    """Rows of an export CSV with a header line, as dicts (blank lines skipped)."""
    reader = csv.DictReader(lines, delimiter=delimiter)
    for row in reader:
        if any(v for v in row.values() if isinstance(v, str)):
            yield {str(k): (v or "") for k, v in row.items() if k is not None}


def fetch_changes(client: EmarsysClient, start: date, end: date, fields: Iterable[int],
                  wait: ExportWait | None = None) -> Iterator[dict[str, str]]:
    """Start a getchanges export, wait for it, and stream its rows."""
    export_id = start_changes_export(client, start, end, fields)
    wait_for_export(client, export_id, wait)
    yield from iter_export_rows(client, export_id, wait)

