"""``pull-optin`` narrows the window for reverting a concurrent edit, and never skips
rows silently (SPEC 4): end to end through the CLI against both simulators."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.base import Request, Response
from magsync.sandbox.emarsys.types import RequestFailed
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from tests.helpers.export_checks import contact_ids
from tests.helpers.pull import export_and_pull, fast_pulls
from tests.helpers.sandbox import lowest_row

CUSTOMER_PUT = r"/V1/customers/\d+$"


@pytest.fixture
def pair() -> Iterator[SandboxPair]:
    with SandboxPair(30, 24, seed=3) as p:
        yield p


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_pulls(monkeypatch)


@pytest.fixture
def exported(pair: SandboxPair, magsync: Any) -> SandboxPair:
    return export_and_pull(pair, magsync)


def _subscribed(pair: SandboxPair) -> tuple[int, int]:
    sub = lowest_row(pair)
    return sub.customer_id, sub.subscriber_id


def _opt_out_in_emarsys(pair: SandboxPair, cid: int) -> None:
    [contact] = contact_ids(pair, f"c:{cid}")
    pair.emarsys.ui_edit(contact, {31: 2})


def _watermark(tmp_path: Path) -> datetime | None:
    with StateStore.open(tmp_path / "state.db") as store:
        return store.get_watermark("pull-optin")


# -- a customer edited in the shop while pull-optin writes it -----------------------------------

def _edited_on_reads(pair: SandboxPair, cid: int, edit_from: int, edit_until: int) -> list[int]:
    """The shop saves customer ``cid`` (a new last name, a later ``updated_at``) just
    before answering its reads number ``edit_from``..``edit_until``, as an admin in the
    backend would; returns the list the read numbers go to."""
    shop, before = pair.magento.shop, pair.magento.before_route
    reads: list[int] = []
    offset = [0]

    def hook(req: Request) -> Response | None:
        if req.method == "GET" and req.path.endswith(f"/V1/customers/{cid}"):
            reads.append(len(reads) + 1)
            if edit_from <= len(reads) <= edit_until:
                offset[0] += 2  # updated_at has whole seconds: each save a later one
                shop.now = lambda: datetime.now(timezone.utc) + timedelta(seconds=offset[0])
                shop.edit_customer(cid, lastname=f"Edit{len(reads)}")
        return before(req)

    pair.magento.before_route = hook  # type: ignore[method-assign]
    return reads


def test_a_customer_saved_between_the_read_and_the_write_is_read_again(
        exported: SandboxPair, magsync: Any) -> None:
    cid, sid = _subscribed(exported)
    _opt_out_in_emarsys(exported, cid)
    reads = _edited_on_reads(exported, cid, 2, 2)  # saved once, just before the PUT

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert len(reads) == 3  # read, changed meanwhile, read again, then written
    [put] = exported.magento.requests("PUT", CUSTOMER_PUT)
    assert put.json()["customer"]["lastname"] == "Edit2"  # the edit was not reverted
    assert exported.magento.shop.subscribers[sid].subscriber_status == 3


def test_a_customer_that_keeps_changing_is_queued_not_written(
        exported: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    cid, sid = _subscribed(exported)
    _opt_out_in_emarsys(exported, cid)
    mark = _watermark(tmp_path)
    quiet = exported.magento.before_route
    reads = _edited_on_reads(exported, cid, 2, 100)

    result = magsync("pull-optin")

    assert result.code == 1, result
    assert len(reads) == 4  # three tries, each a read before the write
    assert exported.magento.requests("PUT", CUSTOMER_PUT) == []
    assert exported.magento.shop.subscribers[sid].subscriber_status == 1
    assert "during each of 3 tries" in result.err
    with StateStore.open(tmp_path / "state.db") as store:
        [queued] = store.queue_items(kind="pull")
        assert queued.key == f"c:{cid}"
    assert _watermark(tmp_path) == mark

    exported.magento.before_route = quiet  # type: ignore[method-assign]
    again = magsync("pull-optin")  # the shop is quiet again: the row goes through

    assert again.code == 0, again
    assert exported.magento.shop.subscribers[sid].subscriber_status == 3


# -- malformed exports ---------------------------------------------------------------------------

def _serve_exports_as(pair: SandboxPair, mangle: Callable[[list[str]], list[str]]) -> None:
    """Every export download answers the real CSV passed through ``mangle`` (its lines)."""
    before = pair.emarsys.before_route

    def hook(req: Request) -> Response | None:
        m = re.search(r"/export/(\d+)/data/?$", req.path)
        if req.method != "GET" or m is None:
            return before(req)
        try:
            text = pair.emarsys.exports.data_csv(int(m.group(1)), 0, None)
        except RequestFailed:
            return before(req)
        lines = text.splitlines(keepends=True)
        body = "".join(mangle(lines) if len(lines) > 1 else lines)
        return Response(200, body.encode(), "text/csv; charset=utf-8")

    pair.emarsys.before_route = hook  # type: ignore[method-assign]


@pytest.mark.parametrize("damage", ["unterminated quote", "field over 1 MB",
                                    "wrong column count"])
def test_a_malformed_export_stops_the_run_and_holds_the_watermark(
        exported: SandboxPair, magsync: Any, tmp_path: Path, damage: str) -> None:
    cid, sid = _subscribed(exported)
    _opt_out_in_emarsys(exported, cid)
    mark = _watermark(tmp_path)

    def mangle(lines: list[str]) -> list[str]:
        if damage == "unterminated quote":  # swallows the rows after it
            return [lines[0], '1,"2,,x@example.com,False\n', *lines[1:]]
        if damage == "field over 1 MB":
            return [lines[0], "1,,,%s,False\n" % ("x" * (1024 * 1024 + 10)), *lines[1:]]
        return [lines[0], "1,2,3,x@example.com,False,extra\n", *lines[1:]]

    _serve_exports_as(exported, mangle)

    result = magsync("pull-optin")

    assert result.code == 3, result
    assert result.err.startswith("magsync: error: Emarsys export "), result.err
    assert "is malformed" in result.err and result.err.count("\n") == 1
    assert exported.magento.requests("PUT", CUSTOMER_PUT) == []  # no row applied
    assert exported.magento.shop.subscribers[sid].subscriber_status == 1
    assert _watermark(tmp_path) == mark


def test_a_field_larger_than_the_csv_modules_default_limit_is_read(
        exported: SandboxPair, magsync: Any) -> None:
    cid, sid = _subscribed(exported)
    _opt_out_in_emarsys(exported, cid)
    big = "x" * (200 * 1024) + "@example.com"  # over csv's 128 KiB default, under 1 MB
    _serve_exports_as(exported, lambda lines: [*lines, f"1,,,{big},False\n"])

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert exported.magento.shop.subscribers[sid].subscriber_status == 3
