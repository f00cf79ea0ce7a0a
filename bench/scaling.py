"""Does an export cost more per contact as the shop grows? CPU per contact, large / small.

    python bench/scaling.py [--small N] [--large M] [--runs R] [--json]

Each round runs ``bench/export.py`` with ``--small`` customers (default 20,000) and then
with ``--large`` (default 300,000), and divides the large run's CPU per exported contact
by the small run's, two ways:

- ``whole``: CPU / contacts sent, start-up included (which a larger run spreads thinner);
- ``after_startup``: (CPU - start-up) / contacts sent, where start-up is the median CPU of
  ``--startup-runs`` exports of 300 customers (measured first): what each contact costs
  once the process is running. This is the figure of Step 8's target (at most 1.1).

Pairs alternate, so a machine that gets busier between rounds moves both sides. Prints
min / median / max over the rounds. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from common import BenchError, run_json, spread

HERE = Path(__file__).resolve().parent


def export(customers: int) -> dict[str, Any]:
    return run_json([sys.executable, str(HERE / "export.py"), "--customers", str(customers),
                     "--json"])


def per_contact(run: dict[str, Any], startup: float) -> float:
    return (run["magsync_cpu_seconds"] - startup) * 1e6 / max(1, run["contacts_sent"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Export CPU per contact, large shop / small.")
    p.add_argument("--small", type=int, default=20000, help="customers (default 20000)")
    p.add_argument("--large", type=int, default=300000, help="customers (default 300000)")
    p.add_argument("--runs", type=int, default=3, help="pairs of runs (default 3)")
    p.add_argument("--startup-runs", type=int, default=3,
                   help="300-customer exports whose median CPU is the start-up (default 3)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    try:
        startup = statistics.median(export(300)["magsync_cpu_seconds"]
                                    for _ in range(args.startup_runs))
        rounds = []
        for _ in range(args.runs):
            small, large = export(args.small), export(args.large)
            rounds.append({
                "small_us": round(per_contact(small, 0.0), 2),
                "large_us": round(per_contact(large, 0.0), 2),
                "small_after_startup_us": round(per_contact(small, startup), 2),
                "large_after_startup_us": round(per_contact(large, startup), 2),
                "whole": per_contact(large, 0.0) / per_contact(small, 0.0),
                "after_startup": per_contact(large, startup) / per_contact(small, startup),
                "small_peak_rss_mb": small["peak_rss_mb"],
                "large_peak_rss_mb": large["peak_rss_mb"],
            })
    except BenchError as exc:
        print(f"bench/scaling.py: {exc}", file=sys.stderr)
        return 1
    summary = {k: spread([r[k] for r in rounds]) for k in rounds[0]}
    if args.json:
        print(json.dumps({"small": args.small, "large": args.large,
                          "startup_cpu_seconds": round(startup, 3), "rounds": rounds,
                          "summary": summary}, indent=2))
        return 0
    print(f"{args.large} / {args.small} customers, {args.runs} pairs; start-up "
          f"{startup:.3f} s CPU (median of {args.startup_runs} 300-customer exports): "
          "min / median / max")
    for key, label in (("small_us", f"{args.small}: µs CPU per contact"),
                       ("large_us", f"{args.large}: µs CPU per contact"),
                       ("whole", "large / small, whole run"),
                       ("after_startup", "large / small, after start-up"),
                       ("large_peak_rss_mb", f"{args.large}: peak RSS, MB")):
        s = summary[key]
        print(f"  {label:34s} {s['min']:8.3f} {s['median']:8.3f} {s['max']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
