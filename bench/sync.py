"""Benchmark ``magsync sync-realtime`` after "a day of changes" in a big shop.

    python bench/sync.py [--customers N] [--subscribers M] [--changes K]
                         [--subscriber-changes S] [--latency MS] [--no-subscriber-scan]
                         [--magento-concurrency C] [--emarsys-concurrency C]
                         [--page-size P] [--json]

Starts the sandbox in a separate process, runs ``export-initial`` (measured on its own,
without latency), edits K customers and flips the status of S subscribers through the
Magento sandbox's control plane, waits until those whole-second ``updated_at`` stamps lie
before the run's start, then runs ``sync-realtime`` as a measured child. Prints the
contacts changed and sent, contacts per second, requests per side, the peak RSS of
magsync and, with ``--latency``, the wall time against the latency bound (see
bench/export.py). See bench/README.md.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

# run as a script, this directory is sys.path[0]
from common import (
    SIDES,
    BenchError,
    ChildResult,
    Sandboxes,
    add_shop_arguments,
    bench_main,
    magsync_json,
    measurements,
    render_measurements,
    run_magsync,
    run_measured,
    tune_config,
)
from export import config_overrides as export_overrides

STATUS_SUBSCRIBED, STATUS_UNSUBSCRIBED = 1, 3
# Magento stamps updated_at in whole seconds and the window ends before the run's start:
# wait past the second of the last change so the run reads every change
SETTLE_SECONDS = 1.1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark magsync sync-realtime.")
    add_shop_arguments(p)
    p.add_argument("--changes", type=int, default=None,
                   help="customers edited before the run (default 5%% of customers)")
    p.add_argument("--subscriber-changes", type=int, default=None,
                   help="subscribers whose status flips before the run "
                        "(default 5%% of subscribers)")
    p.add_argument("--latency", type=float, default=0.0, metavar="MS",
                   help="latency added to every request of the measured run (default 0)")
    p.add_argument("--no-subscriber-scan", action="store_true",
                   help="keep sync.subscriber_scan_minutes at 60: the run does not re-read "
                        "the subscriber list, so status flips wait for a later scan")
    p.add_argument("--seed", type=int, default=0, help="shop generator and change seed")
    args = p.parse_args(argv)
    if args.subscribers is None:
        args.subscribers = args.customers // 5
    if args.changes is None:
        args.changes = max(1, args.customers * 5 // 100)
    if args.subscriber_changes is None:
        args.subscriber_changes = args.subscribers * 5 // 100
    if not 0 <= args.changes <= args.customers:
        p.error("--changes must lie between 0 and --customers")
    if args.subscriber_changes < 0:
        p.error("--subscriber-changes must not be negative")
    return args


def config_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """What the benchmark changes in the sandbox's config: export.py's, plus the scan."""
    overrides = export_overrides(args)
    # 0: this run re-reads the subscriber list (as the hourly scan does), so status flips
    # are sent; 60 is the default, and right after the export no scan is due
    overrides["sync"] = {"subscriber_scan_minutes": 60 if args.no_subscriber_scan else 0}
    return overrides


@dataclass
class DayOfChanges:
    """What the benchmark changed in the shop, by contact."""

    customers: set[int] = field(default_factory=set)  # edited customers
    subscribers: int = 0  # subscriber rows whose status flipped
    subscriber_customers: set[int] = field(default_factory=set)  # their customers, if any
    guests: set[int] = field(default_factory=set)  # their subscriber ids, for guests

    def contacts(self) -> int:
        """Distinct contacts the changes touch: a customer edited and flipped counts once."""
        return len(self.customers | self.subscriber_customers) + len(self.guests)


def make_changes(sandbox: Sandboxes, args: argparse.Namespace) -> DayOfChanges:
    """Edit customers and flip subscriber statuses through the control plane."""
    rng = random.Random(args.seed)
    shop = sandbox.control("magento", "GET", "shop")
    changes = DayOfChanges()
    url = f"{sandbox.base_url('magento')}/_sandbox/shop"
    with requests.Session() as http:  # keep-alive: thousands of edits in a few seconds
        for cid in sorted(rng.sample(range(1, shop["max_customer_id"] + 1), args.changes)):
            # lastname is mapped (Emarsys field 2), so every edit is a real change to send
            _post(http, f"{url}/customers/{cid}", {"lastname": f"Changed {cid}"})
            changes.customers.add(cid)
        rows = sandbox.control("magento", "GET", "shop/subscribers")
        for row in rng.sample(rows, min(args.subscriber_changes, len(rows))):
            status = (STATUS_UNSUBSCRIBED if row["subscriber_status"] == STATUS_SUBSCRIBED
                      else STATUS_SUBSCRIBED)
            _post(http, f"{url}/subscribers/{row['subscriber_id']}", {"status": status})
            changes.subscribers += 1
            if row.get("customer_id"):
                changes.subscriber_customers.add(int(row["customer_id"]))
            else:
                changes.guests.add(int(row["subscriber_id"]))
    return changes


def _post(http: requests.Session, url: str, body: dict[str, Any]) -> None:
    resp = http.post(url, json=body, timeout=60)
    if resp.status_code != 200:
        raise BenchError(f"the sandbox refused a change ({url}): {resp.text.strip()}")


def set_latency(sandbox: Sandboxes, latency_ms: float) -> None:
    """Latency on both servers from now on (the control plane itself is never delayed)."""
    for side in SIDES:
        sandbox.control(side, "POST", "faults", {"latency_ms": latency_ms})



def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start the sandbox, export, change the shop, run sync-realtime once, collect."""
    config = workdir / "bench.yaml"
    # no latency yet: the export is only the starting point, set_latency() adds it later
    with Sandboxes(customers=args.customers, subscribers=args.subscribers,
                   config_path=workdir / "sandbox.yaml", seed=args.seed,
                   one_process=args.one_sandbox_process) as sandbox:
        cfg = tune_config(workdir / "sandbox.yaml", config, workdir / "state.db",
                          config_overrides(args))
        export = run_magsync(config, "export-initial")
        changes = make_changes(sandbox, args)
        time.sleep(SETTLE_SECONDS)
        set_latency(sandbox, args.latency)
        before = {side: sandbox.stats(side) for side in SIDES}
        child = run_measured([sys.executable, "-m", "magsync", "--config", str(config), "-q",
                              "sync-realtime"])
        after = {side: sandbox.stats(side) for side in SIDES}
    # 1 = some contacts were rejected and queued: still a run worth reporting
    if child.exit_code not in (0, 1):
        raise BenchError(f"sync-realtime exited {child.exit_code}: {child.stderr.strip()}")
    runs = magsync_json(config, "status", "--json")["runs"]
    figures = build_figures(args, cfg, child, runs["sync-realtime"]["counts"], before, after,
                            changes)
    figures["export"] = {"wall_seconds": round(export.wall_seconds, 3),
                         "contacts_sent": int(runs["export-initial"]["counts"].get("sent", 0)),
                         "peak_rss_mb": round(export.peak_rss_kb / 1024, 1)}
    return figures


def build_figures(args: argparse.Namespace, cfg: dict[str, Any], child: ChildResult,
                  counts: dict[str, int], before: dict[str, Any], after: dict[str, Any],
                  changes: DayOfChanges) -> dict[str, Any]:
    """The benchmark's figures as one dict (what ``--json`` prints)."""
    return {
        "customers": args.customers, "subscribers": args.subscribers,
        "customers_changed": len(changes.customers),
        "subscribers_changed": changes.subscribers,
        "contacts_changed": changes.contacts(),
        "exit_code": child.exit_code, "counts": counts,
        "subscriber_scan": not args.no_subscriber_scan,
        **measurements(args, cfg, child, int(counts.get("sent", 0)), before, after),
    }


def render_text(f: dict[str, Any]) -> list[str]:
    """The figures for a person."""
    scan = "with" if f["subscriber_scan"] else "without"
    lines = [
        f"sync-realtime: {f['customers']} customers, {f['subscribers']} subscribers; "
        f"{f['customers_changed']} customers edited, {f['subscribers_changed']} subscriber "
        f"statuses flipped -> {f['contacts_changed']} contacts changed, "
        f"{f['contacts_sent']} sent ({scan} a subscriber scan, exit {f['exit_code']})",
    ]
    lines += render_measurements(f)
    e = f["export"]
    lines.append(f"  (export-initial before it, no latency: {e['contacts_sent']} contacts in "
                 f"{e['wall_seconds']:.2f} s, peak RSS {e['peak_rss_mb']} MB)")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; exit 1 when it could not run."""
    return bench_main("bench/sync.py", parse_args(argv), run_benchmark, render_text)


if __name__ == "__main__":
    sys.exit(main())
