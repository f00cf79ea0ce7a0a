"""Benchmark ``magsync export-initial`` against the sandbox in a separate process.

    python bench/export.py [--customers N] [--subscribers M] [--latency MS]
                           [--magento-concurrency C] [--emarsys-concurrency C]
                           [--page-size P] [--json]

Prints contacts per second, requests per side (from each sandbox's ``/_sandbox/stats``),
the peak RSS of the magsync process, and with ``--latency`` the wall time against the
bound max(Magento requests x latency / magento.concurrency, Emarsys requests x latency /
emarsys.concurrency): the time the run would take if the slower side were kept busy at
full concurrency all the time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# run as a script, this directory is sys.path[0]
from common import (
    SIDES,
    BenchError,
    ChildResult,
    Sandboxes,
    add_shop_arguments,
    bench_main,
    latency_timeline,
    magsync_json,
    measurements,
    render_measurements,
    run_measured,
    tune_config,
)

MAX_REQUESTS_PER_MINUTE = 100000  # the config's ceiling; the limiter must not cap the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark magsync export-initial.")
    add_shop_arguments(p)
    p.add_argument("--latency", type=float, default=0.0, metavar="MS",
                   help="latency added to every request on both servers (default 0)")
    p.add_argument("--seed", type=int, default=0, help="shop generator seed (default 0)")
    args = p.parse_args(argv)
    if args.subscribers is None:
        args.subscribers = args.customers // 5
    return args


def config_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """What the benchmark changes in the sandbox's config."""
    magento: dict[str, Any] = {"page_size": args.page_size}
    emarsys: dict[str, Any] = {"requests_per_minute": MAX_REQUESTS_PER_MINUTE}
    if args.magento_concurrency is not None:
        magento["concurrency"] = args.magento_concurrency
    if args.emarsys_concurrency is not None:
        emarsys["concurrency"] = args.emarsys_concurrency
    return {"magento": magento, "emarsys": emarsys}


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start the sandbox, run the export once, collect the figures, stop the sandbox."""
    config = workdir / "bench.yaml"
    with Sandboxes(customers=args.customers, subscribers=args.subscribers,
                   config_path=workdir / "sandbox.yaml", latency_ms=args.latency,
                   seed=args.seed, one_process=args.one_sandbox_process) as sandbox:
        cfg = tune_config(workdir / "sandbox.yaml", config, workdir / "state.db",
                          config_overrides(args))
        for side in SIDES:  # the timeline reads this run's requests alone
            sandbox.control(side, "DELETE", "log")
        before = {side: sandbox.stats(side) for side in SIDES}
        child = run_measured([sys.executable, "-m", "magsync", "--config", str(config), "-q",
                              "export-initial"])
        after = {side: sandbox.stats(side) for side in SIDES}
        log = {side: sandbox.control(side, "GET", "log") for side in SIDES} \
            if args.latency > 0 else {}
        subscribers = sandbox.control("magento", "GET", "shop/subscribers")
        emarsys_contacts = sandbox.control("emarsys", "GET", "state")["contacts"]
    if child.exit_code != 0:
        raise BenchError(f"export-initial exited {child.exit_code}: {child.stderr.strip()}")
    counts = magsync_json(config, "status", "--json")["runs"]["export-initial"]["counts"]
    guests = sum(1 for s in subscribers if not s.get("customer_id"))
    figures = build_figures(args, cfg, child, counts, before, after, guests=guests,
                            subscribers=len(subscribers), emarsys_contacts=emarsys_contacts)
    if log:
        figures.update(latency_timeline(args.latency, child, log))
    return figures


def build_figures(args: argparse.Namespace, cfg: dict[str, Any], child: ChildResult,
                  counts: dict[str, int], before: dict[str, Any], after: dict[str, Any], *,
                  guests: int, subscribers: int, emarsys_contacts: int) -> dict[str, Any]:
    """The benchmark's figures as one dict (what ``--json`` prints)."""
    return {
        "customers": args.customers, "subscribers": subscribers, "guest_subscribers": guests,
        "magento_records": args.customers + subscribers,
        "expected_contacts": args.customers + guests,
        "emarsys_contacts": emarsys_contacts, "counts": counts,
        **measurements(args, cfg, child, int(counts.get("sent", 0)), before, after),
    }


def render_text(f: dict[str, Any]) -> list[str]:
    """The figures for a person."""
    lines = [
        f"export-initial: {f['customers']} customers, {f['subscribers']} subscribers "
        f"({f['guest_subscribers']} guests) -> {f['contacts_sent']} contacts sent "
        f"({f['emarsys_contacts']} in Emarsys)",
    ]
    lines += render_measurements(f)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; exit 1 when it could not run."""
    return bench_main("bench/export.py", parse_args(argv), run_benchmark, render_text)


if __name__ == "__main__":
    sys.exit(main())
