"""Progress (drawn only on a terminal): the calls a run makes to its progress hook — each
phase with its total where one is known (the customer search's ``total_count``, the
subscriber list's count), the subscriber list and the guest subscribers shown."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qsl

from magsync.config import load_config
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.sync.export import ExportOptions, export_initial
from magsync.sync.realtime import SyncOptions, sync_realtime
from tests.helpers.sandbox import clock_behind

Calls = dict[str, list[tuple[int, int | None]]]


class Recorder:
    """A progress hook that keeps every call, by phase."""

    def __init__(self) -> None:
        self.calls: Calls = defaultdict(list)

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        self.calls[phase].append((done, total))


def test_export_shows_every_phase_with_its_total(pair: SandboxPair, config_file: Path,
                                                 tmp_path: Path) -> None:
    shop = pair.magento.shop
    guests = sum(1 for s in shop.subscribers.values() if not s.customer_id)
    hook = Recorder()
    with StateStore.open(tmp_path / "state.db") as store:
        export_initial(load_config(config_file), store, ExportOptions(), progress=hook)

    customers = hook.calls["customers"]
    assert customers[0] == (0, len(shop.customers))  # the total before the first page
    assert customers[-1] == (len(shop.customers), len(shop.customers))
    assert [done for done, _ in customers] == sorted(done for done, _ in customers)
    subscribers = hook.calls["subscriber list"]
    assert subscribers[0] == (0, None) and subscribers[-1] == (80, 80)
    assert hook.calls["guest subscribers"][-1] == (guests, guests)
    assert set(hook.calls) == {"customers", "subscriber list", "guest subscribers"}


def test_a_sync_counts_its_change_window(pair: SandboxPair, config_file: Path,
                                         tmp_path: Path) -> None:
    cfg = load_config(config_file)
    with StateStore.open(tmp_path / "state.db") as store:
        export_initial(cfg, store, ExportOptions())
        shop = pair.magento.shop
        clock_behind(shop)
        for cid in sorted(shop.customers)[:3]:
            shop.edit_customer(cid, firstname="Edited")
        hook = Recorder()
        sync_realtime(cfg, store, SyncOptions(), hook)
    assert hook.calls["customers"][-1] == (3, 3)


def test_no_hook_no_counting_requests(pair: SandboxPair, config_file: Path,
                                      tmp_path: Path) -> None:
    # the totals cost a request each; without a terminal nobody would see them
    with StateStore.open(tmp_path / "state.db") as store:
        export_initial(load_config(config_file), store, ExportOptions())
    fields = [dict(parse_qsl(r.query_string)).get("fields", "")
              for r in pair.magento.requests("GET", r"/customers/search")]
    assert fields and "total_count" not in fields
