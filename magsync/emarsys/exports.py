"""Emarsys exports: ask which contacts changed (getchanges) or answered a campaign
(getresponses), wait for the export, stream its CSV row by row.

An export runs asynchronously: a POST starts it, ``GET /export/{id}`` reports its
status, ``GET /export/{id}/data`` serves the CSV once done (404/4005 until then, even
when the status already says done, so both are waited for). The download is streamed
and checked strictly: a first export after an initial export lists every contact, and
a malformed file (an unterminated quote, a field over 1 MB, a row with the wrong number
of columns) is ``MalformedExport`` (exit 3), never rows silently skipped or merged.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import requests
import urllib3

from magsync.emarsys.client import SERVICE, EmarsysClient
from magsync.errors import FatalRemoteError, RemoteError, RetriableError

READY = frozenset({"done", "ready"})
IN_PROGRESS_CODE = 4005
EXPIRED_CODE = 4003
MAX_FIELD_BYTES = 1024 * 1024  # SPEC 3: each field of an export at most 1 MB
MAX_HEADER_CHARS = 64 * 1024
_BROKEN_OFF = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


class MalformedExport(FatalRemoteError):
    """The export's CSV cannot be read safely (exit 3; the run moves no watermark)."""


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


def start_responses_export(client: EmarsysClient, start: datetime, end: datetime,
                           fields: Iterable[int], sources: Sequence[str] = ("unsubscribe",)
                           ) -> int:
    """Start a getresponses export: the contacts who answered a campaign email with one
    of ``sources`` in ``[start, end)`` (naive CET date-times, as getchanges' dates)."""
    if start >= end:
        raise ValueError("getresponses needs a start before its end")
    data = client.call("POST", "/email/getresponses", json={
        "time_range": [start.strftime("%Y-%m-%d %H:%M:%S"),
                       end.strftime("%Y-%m-%d %H:%M:%S")],
        "sources": list(sources), "contact_fields": [int(f) for f in fields],
        "distribution_method": "local"})
    return int(data["id"])


def wait_for_export(client: EmarsysClient, export_id: int, wait: ExportWait | None = None
                    ) -> None:
    """Poll ``GET /export/{id}`` until it is done; ``RemoteError`` on error or timeout."""
    wait_for_exports(client, [export_id], wait)


def wait_for_exports(client: EmarsysClient, export_ids: Sequence[int],
                     wait: ExportWait | None = None) -> None:
    """Poll each export until all are done (one round of polls per pause, so exports
    that Emarsys prepares side by side are waited for once); ``RemoteError`` on error or
    timeout."""
    wait = wait or DEFAULT_WAIT
    started = wait.clock()
    delay = wait.first
    waiting = {export_id: "" for export_id in export_ids}  # id -> its last status
    while waiting:
        for export_id in list(waiting):
            data = client.call("GET", f"/export/{export_id}") or {}
            status = waiting[export_id] = str(data.get("status") or "").lower()
            if status in READY:
                del waiting[export_id]
            elif status == "error":
                raise RemoteError(f"Emarsys export {export_id} failed (status error)",
                                  service=SERVICE, hint="run again to start a new export")
        if waiting:
            first = next(iter(waiting))
            delay = _pause(wait, started, delay, first, waiting[first])


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
                     ) -> Generator[dict[str, str], None, None]:
    """The export's CSV rows as dicts by header (``user_id`` first), streamed: the
    download is read as the rows are consumed, and closed with the generator."""
    wait = wait or DEFAULT_WAIT
    started = wait.clock()
    delay = wait.first
    while True:
        with client.http.stream("GET", f"/export/{export_id}/data") as resp:
            if resp.status_code == 200:
                try:
                    yield from parse_export_csv(_text_lines(resp), export_id=export_id)
                except _BROKEN_OFF as exc:
                    raise RetriableError(
                        f"the download of Emarsys export {export_id} broke off: "
                        f"{client.http.redact(f'{type(exc).__name__}: {exc}')}",
                        service=SERVICE, hint="the next run downloads it again") from None
                return
            code = _reply_code(resp)
            if not (resp.status_code == 404 and code in (IN_PROGRESS_CODE, None)):
                client.unwrap(resp)  # raises the typed error (410/4003 expired, ...)
                raise RemoteError(f"Emarsys export {export_id}: unexpected "
                                  f"{client.http.describe(resp)}", service=SERVICE,
                                  status=resp.status_code, code=code)
        delay = _pause(wait, started, delay, export_id, "in progress")


def _reply_code(resp: requests.Response) -> int | None:
    try:
        return int(resp.json()["replyCode"])
    except (ValueError, KeyError, TypeError):
        return None


def _text_lines(resp: requests.Response) -> io.TextIOWrapper:
    raw: Any = resp.raw  # urllib3's response is a readable binary stream
    raw.decode_content = True
    raw.auto_close = False  # else it reports "closed" at EOF and TextIOWrapper fails
    return io.TextIOWrapper(raw, encoding=resp.encoding or "utf-8", newline="")


def parse_export_csv(text: io.TextIOBase | Iterable[str], delimiter: str = ",", *,
                     export_id: int | None = None) -> Iterator[dict[str, str]]:
    """Rows of an export CSV with a header line, as dicts (blank lines skipped).

    ``text`` is a text stream (read a bounded line at a time) or an iterable of lines.
    Each row must be one line with as many fields as the header, each field at most
    1 MB; anything else raises ``MalformedExport``.
    """
    yield from _StrictCsv(text, delimiter, export_id).rows()


class _StrictCsv:
    """One pass over an export CSV that refuses what it cannot read safely."""

    def __init__(self, text: io.TextIOBase | Iterable[str], delimiter: str,
                 export_id: int | None) -> None:
        self.text = text
        self.delimiter = delimiter
        self.what = f"Emarsys export {export_id}" if export_id is not None else \
            "the Emarsys export"
        self.line_limit = MAX_HEADER_CHARS
        self.lines_read = 0
        self.row_end = 0  # the line the last complete row ended on

    def rows(self) -> Iterator[dict[str, str]]:
        _allow_large_fields()
        reader = csv.reader(self._lines(), delimiter=self.delimiter, strict=True)
        try:
            header = [h.lstrip("\ufeff") for h in next(reader, [])]
            self.row_end = reader.line_num
            # A field of 1 MB, every character a doubled quote, plus quotes and commas.
            self.line_limit = len(header) * (2 * MAX_FIELD_BYTES + 3) + 2
            for row in reader:
                self.row_end = reader.line_num
                if not any(row):
                    continue  # a blank line
                if len(row) != len(header):
                    raise self._bad(f"line {reader.line_num} has {len(row)} fields, the "
                                    f"header {len(header)}")
                self._check_sizes(row, reader.line_num)
                yield dict(zip(header, row, strict=True))
        except csv.Error as exc:
            detail = ("has a field over 1 MB" if "field limit" in str(exc) else
                      f"cannot be read: {exc} (an unterminated quote?)")
            raise self._bad(f"line {self.lines_read} {detail}") from None
        except UnicodeDecodeError as exc:
            raise self._bad(f"not UTF-8 text after line {self.lines_read}: {exc.reason}"
                            ) from None

    def _lines(self) -> Iterator[str]:
        """The physical lines, each at most ``line_limit`` characters; a row that runs
        into a second line (a quote left open) stops the read at once."""
        readline = getattr(self.text, "readline", None)
        source = iter(lambda: readline(self.line_limit + 1), "") if readline else \
            iter(self.text)
        for line in source:
            self.lines_read += 1
            if self.lines_read - self.row_end > 1:
                raise self._bad(f"the field opened by a quote on line {self.row_end + 1} "
                                "runs past the end of its line (an unterminated quote)")
            if len(line) > self.line_limit:
                raise self._bad(f"line {self.lines_read} is longer than its fields can be "
                                "(a field over 1 MB)")
            yield line

    def _check_sizes(self, row: list[str], line: int) -> None:
        for value in row:
            if len(value) > MAX_FIELD_BYTES // 4 and \
                    len(value.encode("utf-8")) > MAX_FIELD_BYTES:
                raise self._bad(f"line {line} has a field over 1 MB")

    def _bad(self, detail: str) -> MalformedExport:
        return MalformedExport(
            f"{self.what} is malformed: {detail}; no row of it was applied",
            service=SERVICE, hint="the watermark stays; the next run asks for a new export "
                                  "(report it to Emarsys support if it persists)")


def _allow_large_fields() -> None:
    """The csv module's field limit (131072 characters by default) below SPEC's 1 MB:
    raised for the whole process, never lowered (``_check_sizes`` enforces 1 MB)."""
    if csv.field_size_limit() <= MAX_FIELD_BYTES:
        csv.field_size_limit(MAX_FIELD_BYTES + 1)


def fetch_changes(client: EmarsysClient, start: date, end: date, fields: Iterable[int],
                  wait: ExportWait | None = None) -> Iterator[dict[str, str]]:
    """Start a getchanges export, wait for it, and stream its rows."""
    export_id = start_changes_export(client, start, end, fields)
    wait_for_export(client, export_id, wait)
    yield from iter_export_rows(client, export_id, wait)
