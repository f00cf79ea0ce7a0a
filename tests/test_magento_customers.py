"""Customer readers against the Magento sandbox: keyset export (resumed, in parallel id
ranges), the fixed change window (boundary ties, edits during the read), prefetch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from magsync.errors import FatalRemoteError
from magsync.magento.customers import (
    ExportProgress,
    IdRange,
    Page,
    check_keyset,
    count_customers,
    iter_all_customers,
    iter_changed_customers,
    plan_ranges,
)
from magsync.sandbox.magento.server import MagentoSandbox
from magsync.sandbox.magento.shop_gen import generate_shop
from tests.helpers.magento import make_client

ANCHOR = datetime(2026, 5, 1, tzinfo=timezone.utc)
T0 = datetime(2026, 5, 2, 10, 0, 0, tzinfo=timezone.utc)


class Clock:
    """The sandbox shop's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def server(clock: Clock) -> Iterator[MagentoSandbox]:
    srv = MagentoSandbox(generate_shop(60, 20, seed=5, anchor=ANCHOR, now=clock))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def ids_of(pages: list[Page]) -> list[int]:
    return [c["id"] for p in pages for c in p.items]


def search_queries(server: MagentoSandbox) -> list[str]:
    return [r.query_string for r in server.requests("GET", r"/customers/search$")]


# -- export: keyset, resume, parallel ranges -------------------------------------------
def test_keyset_export_reads_every_customer_once_in_order(server: MagentoSandbox) -> None:
    pages = list(iter_all_customers(make_client(server, page_size=7, concurrency=1)))
    assert ids_of(pages) == sorted(server.shop.customers)
    assert [len(p.items) for p in pages] == [7] * 8 + [4]
    assert pages[-1].done and not any(p.done for p in pages[:-1])
    assert [p.last_id for p in pages][:2] == [7, 14]
    for q in search_queries(server):
        assert "%5Bfield%5D=entity_id" in q and "condition_type%5D=gt" in q
        assert "sortOrders%5D%5B0%5D%5Bdirection%5D=ASC" in q
        assert "currentPage%5D=1" in q  # keyset: never an offset


def test_export_resumes_after_an_id(server: MagentoSandbox) -> None:
    pages = list(iter_all_customers(make_client(server, page_size=10, concurrency=1),
                                    after_id=25))
    assert ids_of(pages) == [i for i in sorted(server.shop.customers) if i > 25]


def test_parallel_id_ranges_read_every_customer_exactly_once(server: MagentoSandbox) -> None:
    server.shop.delete_customer(30)  # a gap in the ids
    client = make_client(server, page_size=4, concurrency=3)
    ranges = plan_ranges(client)
    assert [(r.after_id, r.upto_id) for r in ranges] == [(0, 20), (20, 40), (40, None)]
    pages = list(iter_all_customers(client, ranges=ranges))
    read = ids_of(pages)
    assert sorted(read) == sorted(server.shop.customers) and len(read) == len(set(read))
    for index in range(3):  # each range's own pages arrive in id order
        own = ids_of([p for p in pages if p.range_index == index])
        assert own == sorted(own)
    assert any("condition_type%5D=lteq" in q for q in search_queries(server))
    progress = ExportProgress(ranges)
    for page in pages:
        progress.commit(page)
    assert progress.complete and progress.safe_after_id == 60 and progress.remaining() == []


def test_last_range_reads_customers_created_during_the_export(server: MagentoSandbox
                                                              ) -> None:
    client = make_client(server, page_size=10, concurrency=2)
    ranges = plan_ranges(client)
    new_id = server.shop.create_customer(email="late@example.com", firstname="Late",
                                         lastname="Comer")
    assert new_id in ids_of(list(iter_all_customers(client, ranges=ranges)))


def test_progress_gives_a_safe_resume_point(server: MagentoSandbox) -> None:
    client = make_client(server, page_size=5, concurrency=3)
    ranges = plan_ranges(client)
    pages = list(iter_all_customers(client, ranges=ranges))
    progress = ExportProgress(ranges)
    # committed: all of range 0, the first page of range 1, nothing of range 2
    for page in [p for p in pages if p.range_index == 0]:
        progress.commit(page)
    progress.commit(next(p for p in pages if p.range_index == 1))
    assert progress.safe_after_id == 25
    rest = ids_of(list(iter_all_customers(client, ranges=progress.remaining())))
    assert sorted(rest) == list(range(26, 61)) and len(rest) == len(set(rest))
    resumed = ids_of(list(iter_all_customers(client, after_id=progress.safe_after_id)))
    assert sorted(resumed) == list(range(26, 61))


def test_website_filter_limits_the_export(server: MagentoSandbox) -> None:
    pages = list(iter_all_customers(make_client(server, page_size=9, concurrency=2,
                                                website_ids=(2,))))
    expected = sorted(c for c, r in server.shop.customers.items() if r["website_id"] == 2)
    assert expected and sorted(ids_of(pages)) == expected


# -- the change window --------------------------------------------------------------------
def edit_at(server: MagentoSandbox, clock: Clock, when: datetime, ids: list[int]) -> None:
    clock.now = when
    for cid in ids:
        server.shop.edit_customer(cid, taxvat=f"T{cid}-{when:%H%M%S}")


def test_window_is_half_open_with_ties_on_both_boundaries(server: MagentoSandbox,
                                                         clock: Clock) -> None:
    until = T0 + timedelta(minutes=5)
    edit_at(server, clock, T0 - timedelta(seconds=1), [1, 2])   # before: out
    edit_at(server, clock, T0, [9, 3, 40, 17])                   # ties on `since`: in
    edit_at(server, clock, T0 + timedelta(minutes=1), [5, 33])  # inside
    edit_at(server, clock, until, [4, 50, 11])                   # ties on `until`: out
    client = make_client(server, page_size=2)
    pages = list(iter_changed_customers(client, T0, until))
    assert ids_of(pages) == [3, 5, 9, 17, 33, 40]
    assert count_customers(client, None) == 60
    later = list(iter_changed_customers(client, until, until + timedelta(minutes=5)))
    assert ids_of(later) == [4, 11, 50]


def test_customers_edited_during_the_read_are_not_skipped_or_doubled(
        server: MagentoSandbox, clock: Clock) -> None:
    window_ids = list(range(10, 40))
    edit_at(server, clock, T0, window_ids)
    until = T0 + timedelta(minutes=10)
    clock.now = until + timedelta(seconds=30)  # the shop's "now" during the read
    client = make_client(server, page_size=3)
    read: list[int] = []
    for n, page in enumerate(iter_changed_customers(client, T0, until)):
        read += [c["id"] for c in page.items]
        if n == 0:
            # one already read, one still ahead (past the prefetched pages)
            server.shop.edit_customer(10, taxvat="edited")
            server.shop.edit_customer(38, taxvat="edited")
    assert len(read) == len(set(read))
    assert read == [i for i in window_ids if i != 38]
    nxt = ids_of(list(iter_changed_customers(client, until, until + timedelta(minutes=10))))
    assert nxt == [10, 38]
    assert set(read) | set(nxt) == set(window_ids)


def test_window_needs_aware_ordered_bounds(server: MagentoSandbox) -> None:
    client = make_client(server)
    with pytest.raises(ValueError):
        iter_changed_customers(client, T0, T0)
    with pytest.raises(ValueError):
        iter_changed_customers(client, T0.replace(tzinfo=None), T0 + timedelta(hours=1))


def test_changed_window_resumes_after_an_id(server: MagentoSandbox, clock: Clock) -> None:
    edit_at(server, clock, T0, [2, 8, 15, 23])
    pages = iter_changed_customers(make_client(server, page_size=2), T0,
                                   T0 + timedelta(hours=1), after_id=8)
    assert ids_of(list(pages)) == [15, 23]


# -- keyset safety, errors, threads ---------------------------------------------------------
def test_a_page_repeating_an_id_is_an_error() -> None:
    rng = IdRange(0, 0, None)
    assert check_keyset([{"id": 3}, {"id": 5}], 2, rng) == 5
    with pytest.raises(FatalRemoteError):
        check_keyset([{"id": 5}, {"id": 5}], 2, rng)
    with pytest.raises(FatalRemoteError):
        check_keyset([{"id": 2}], 2, rng)
    with pytest.raises(FatalRemoteError):
        check_keyset([{"id": 12}], 2, IdRange(0, 0, 10))


def test_a_failing_page_raises_in_the_consumer(server: MagentoSandbox) -> None:
    client = make_client(server, page_size=5, concurrency=1)
    pages = iter_all_customers(client)
    first = next(pages)
    server.fail_next(5, 400)
    with pytest.raises(FatalRemoteError) as info:
        list(pages)
    assert len(first.items) == 5 and info.value.status == 400


def test_stopping_early_stops_the_reader_threads(server: MagentoSandbox) -> None:
    client = make_client(server, page_size=2, concurrency=3)
    pages = iter_all_customers(client)
    next(pages)
    pages.close()
    alive = [t for t in threading.enumerate() if t.name.startswith("magento-read")]
    assert alive == []
    total = len(server.requests("GET", r"/customers/search$"))
    # the max-id query, the consumed page, a full queue (3) and one page per blocked
    # reader (3): the readers stopped instead of reading all 33 pages
    assert total <= 8
