"""Benchmark ``magsync reconcile`` after customers were deleted in a big shop.

    python bench/reconcile.py [--customers N] [--subscribers M] [--deleted-percent P]
                              [--mode keep|unsubscribe|delete] [--latency MS]
                              [--magento-concurrency C] [--emarsys-concurrency C]
                              [--page-size P] [--json]

Starts the sandbox in a separate process, runs ``export-initial`` (measured on its own,
without latency), deletes P% of the customers through the Magento sandbox's control plane
(their subscriber rows go with them), then runs ``reconcile --allow-deletions K`` as a
measured child. Prints the deletions found and applied, the wall time, the requests per
side against the expected ones (customers / page_size id pages, one GET per candidate),
and the peak RSS of magsync against the export's. See bench/README.md.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
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

SUBSCRIBER_PAGE_SIZE = 1000  # magsync's page size for the Emarsys module's list
CUSTOMER_GET = "GET /rest/all/V1/customers/{id}"
ID_SEARCH = "GET /rest/all/V1/customers/search"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark magsync reconcile.")
    add_shop_arguments(p)
    p.add_argument("--deleted-percent", type=float, default=1.0,
                   help="customers deleted in Magento before the run (default 1%%)")
    p.add_argument("--mode", choices=("keep", "unsubscribe", "delete"), default="delete",
                   help="sync.deletions (default delete)")
    p.add_argument("--latency", type=float, default=0.0, metavar="MS",
                   help="latency added to every request of the measured run (default 0)")
    p.add_argument("--seed", type=int, default=0, help="shop generator and deletion seed")
    args = p.parse_args(argv)
    if args.subscribers is None:
        args.subscribers = args.customers // 5
    if not 0 <= args.deleted_percent <= 100:
        p.error("--deleted-percent must lie between 0 and 100")
    return args


def config_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """export.py's, plus the deletion mode."""
    overrides = export_overrides(args)
    overrides["sync"] = {"deletions": args.mode}
    return overrides


def delete_customers(sandbox: Sandboxes, args: argparse.Namespace) -> list[int]:
    """Delete a seeded sample of the customers through the control plane."""
    shop = sandbox.control("magento", "GET", "shop")
    count = round(shop["customers"] * args.deleted_percent / 100)
    ids = sorted(random.Random(args.seed).sample(range(1, shop["max_customer_id"] + 1),
                                                 count))
    url = f"{sandbox.base_url('magento')}/_sandbox/shop/customers"
    with requests.Session() as http:  # keep-alive: a thousand deletions in a second or two
        for cid in ids:
            resp = http.delete(f"{url}/{cid}", timeout=60)
            if resp.status_code != 200:
                raise BenchError(f"the sandbox refused to delete customer {cid}: {resp.text}")
    return ids


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start the sandbox, export, delete customers, run reconcile once, collect."""
    config = workdir / "bench.yaml"
    with Sandboxes(customers=args.customers, subscribers=args.subscribers,
                   config_path=workdir / "sandbox.yaml", seed=args.seed,
                   one_process=args.one_sandbox_process) as sandbox:
        cfg = tune_config(workdir / "sandbox.yaml", config, workdir / "state.db",
                          config_overrides(args))
        export = run_magsync(config, "export-initial")
        deleted = delete_customers(sandbox, args)
        for side in SIDES:
            sandbox.control(side, "POST", "faults", {"latency_ms": args.latency})
        before = {side: sandbox.stats(side) for side in SIDES}
        child = run_measured([sys.executable, "-m", "magsync", "--config", str(config), "-q",
                              "reconcile", "--allow-deletions", str(len(deleted))])
        after = {side: sandbox.stats(side) for side in SIDES}
    if child.exit_code != 0:
        raise BenchError(f"reconcile exited {child.exit_code}: {child.stderr.strip()}")
    status = magsync_json(config, "status", "--json")
    return build_figures(args, cfg, child, export, status, deleted, before, after)


def build_figures(args: argparse.Namespace, cfg: dict[str, Any], child: ChildResult,
                  export: ChildResult, status: dict[str, Any], deleted: list[int],
                  before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's figures as one dict (what ``--json`` prints)."""
    counts = status["runs"]["reconcile"]["counts"]
    page_size = cfg["magento"]["page_size"]
    figures = measurements(args, cfg, child, int(counts.get("deletions_applied", 0)),
                           before, after)
    routes = figures["requests_by_route"]["magento"]
    remaining = args.customers - len(deleted)
    return {
        "customers": args.customers, "subscribers": args.subscribers, "mode": args.mode,
        "customers_deleted": len(deleted), "counts": counts,
        "deletions": status["deletions"], "exit_code": child.exit_code,
        # id pages until an empty one (read ahead); one GET per candidate; the subscriber
        # list once
        "expected_id_pages": math.ceil(remaining / page_size) + 1,
        "expected_customer_gets": len(deleted),
        "expected_subscriber_pages": max(1, math.ceil(args.subscribers / SUBSCRIBER_PAGE_SIZE)),
        "id_pages": routes.get(ID_SEARCH, 0), "customer_gets": routes.get(CUSTOMER_GET, 0),
        "export": {"wall_seconds": round(export.wall_seconds, 3),
                   "peak_rss_mb": round(export.peak_rss_kb / 1024, 1)},
        "rss_vs_export": round(child.peak_rss_kb / export.peak_rss_kb, 3)
        if export.peak_rss_kb else None,
        **figures,
    }


def render_text(f: dict[str, Any]) -> list[str]:
    """The figures for a person."""
    lines = [
        f"reconcile: {f['customers']} customers, {f['customers_deleted']} deleted in Magento "
        f"-> {f['counts'].get('deletions_found', 0)} found, {f['contacts_sent']} applied "
        f"(sync.deletions: {f['mode']}, exit {f['exit_code']})",
        f"  id pages {f['id_pages']} (expected {f['expected_id_pages']}), customer GETs "
        f"{f['customer_gets']} (expected {f['expected_customer_gets']})",
    ]
    lines += [line.replace("contacts/s", "deletions/s") for line in render_measurements(f)]
    lines.append(f"  export-initial before it: {f['export']['wall_seconds']:.2f} s, peak RSS "
                 f"{f['export']['peak_rss_mb']} MB (reconcile/export RSS {f['rss_vs_export']})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; exit 1 when it could not run."""
    return bench_main("bench/reconcile.py", parse_args(argv), run_benchmark, render_text)


if __name__ == "__main__":
    sys.exit(main())
