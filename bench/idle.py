"""Benchmark a ``magsync sync-realtime`` that has nothing to send: what cron's minutely run
costs when the shop is quiet.

    python bench/idle.py [--customers N] [--subscribers M] [--runs R] [--json]

Starts the sandbox in separate processes (as bench/export.py does), runs
``export-initial`` once, then runs ``python -m magsync --config X -q sync-realtime`` R
times as measured children, with nothing changed in the shop. Each run's CPU (user +
system, ``wait4`` rusage of that child alone), wall time, peak RSS and the requests each
simulator answered during it are reported, with min / median / max over the runs. The
first run is also reported apart: it is the one that may read Emarsys's metadata (its
cache in the state file is refreshed once an hour), the others are the steady state.

What bounds it is measured beside it, as many times: the CPU of ``python -c pass`` (the
interpreter's start-up) and of a Python that imports only the libraries such a run cannot
do without (``requests`` for the Magento search, ``click``, ``yaml`` for the config,
``sqlite3`` for the state file). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# run as a script, this directory is sys.path[0]
from common import (
    SIDES,
    BenchError,
    ChildResult,
    Sandboxes,
    bench_main,
    route_delta,
    run_magsync,
    run_measured,
    spread,
    tune_config,
)
from export import MAX_REQUESTS_PER_MINUTE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark a no-change magsync sync-realtime.")
    p.add_argument("--customers", type=int, default=2000, help="customers (default 2000)")
    p.add_argument("--subscribers", type=int, default=None,
                   help="newsletter subscribers (default customers/5)")
    p.add_argument("--runs", type=int, default=5, help="measured runs (default 5)")
    p.add_argument("--seed", type=int, default=0, help="shop generator seed (default 0)")
    p.add_argument("--one-sandbox-process", action="store_true",
                   help="run both simulators in one process")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.subscribers is None:
        args.subscribers = args.customers // 5
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def config_overrides() -> dict[str, dict[str, Any]]:
    """The limiter must not slow the tool down; the subscriber scan keeps its default
    (60 minutes: right after the export none is due, as in most minutes of a day)."""
    return {"emarsys": {"requests_per_minute": MAX_REQUESTS_PER_MINUTE}}


def measure_run(sandbox: Sandboxes, config: Path) -> dict[str, Any]:
    """One measured ``sync-realtime``: CPU, wall, peak RSS, requests per side and route."""
    before = {side: sandbox.stats(side) for side in SIDES}
    child = run_measured([sys.executable, "-m", "magsync", "--config", str(config), "-q",
                          "sync-realtime"])
    after = {side: sandbox.stats(side) for side in SIDES}
    if child.exit_code != 0:
        raise BenchError(f"sync-realtime exited {child.exit_code}: {child.stderr.strip()}")
    return {"cpu_seconds": round(child.cpu_seconds, 3),
            "wall_seconds": round(child.wall_seconds, 3),
            "peak_rss_mb": round(child.peak_rss_kb / 1024, 1),
            "requests": {side: after[side]["total"] - before[side]["total"]
                         for side in SIDES},
            "requests_by_route": {side: route_delta(before[side], after[side])
                                  for side in SIDES}}


FLOOR_IMPORTS = "import requests, click, yaml, sqlite3"


def child_cpu(argv: list[str]) -> float:
    """User + system CPU of one child process (``wait4`` rusage)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return float(usage.ru_utime + usage.ru_stime)


def measure_floor(runs: int) -> dict[str, dict[str, float]]:
    """The start-up of Python alone, and with the libraries a run needs (no magsync)."""
    bare = [child_cpu([sys.executable, "-c", "pass"]) for _ in range(runs)]
    libs = [child_cpu([sys.executable, "-c", FLOOR_IMPORTS]) for _ in range(runs)]
    return {"python_seconds": spread(bare), "libraries_seconds": spread(libs)}


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start the sandbox, export, then run sync-realtime ``args.runs`` times."""
    config = workdir / "bench.yaml"
    with Sandboxes(customers=args.customers, subscribers=args.subscribers,
                   config_path=workdir / "sandbox.yaml", seed=args.seed,
                   one_process=args.one_sandbox_process) as sandbox:
        tune_config(workdir / "sandbox.yaml", config, workdir / "state.db",
                    config_overrides())
        export = run_magsync(config, "export-initial")
        runs = [measure_run(sandbox, config) for _ in range(args.runs)]
    figures = build_figures(args, runs, export)
    figures["floor"] = measure_floor(args.runs)
    return figures



def build_figures(args: argparse.Namespace, runs: list[dict[str, Any]],
                  export: ChildResult) -> dict[str, Any]:
    steady = runs[1:] or runs
    return {
        "customers": args.customers, "subscribers": args.subscribers, "runs": runs,
        "cpu_seconds": spread([r["cpu_seconds"] for r in runs]),
        "wall_seconds": spread([r["wall_seconds"] for r in runs]),
        "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs]),
        "emarsys_requests": spread([r["requests"]["emarsys"] for r in runs]),
        "magento_requests": spread([r["requests"]["magento"] for r in runs]),
        "steady_emarsys_requests": spread([r["requests"]["emarsys"] for r in steady]),
        "export": {"wall_seconds": round(export.wall_seconds, 3)},
    }


def render_text(f: dict[str, Any]) -> list[str]:
    def line(name: str, s: dict[str, float], unit: str = "") -> str:
        return (f"  {name}: min {s['min']:g}{unit}, median {s['median']:g}{unit}, "
                f"max {s['max']:g}{unit}")

    lines = [f"sync-realtime with nothing to send: {f['customers']} customers, "
             f"{f['subscribers']} subscribers, {len(f['runs'])} runs",
             line("CPU", f["cpu_seconds"], " s"), line("wall", f["wall_seconds"], " s"),
             line("peak RSS", f["peak_rss_mb"], " MB"),
             line("Emarsys requests", f["emarsys_requests"]),
             line("Magento requests", f["magento_requests"]),
             line("floor: python -c pass", f["floor"]["python_seconds"], " s"),
             line(f"floor: python -c '{FLOOR_IMPORTS}'", f["floor"]["libraries_seconds"],
                  " s")]
    for i, run in enumerate(f["runs"], start=1):
        routes = "; ".join(f"{side} {route} {n}" for side in SIDES
                           for route, n in run["requests_by_route"][side].items())
        lines.append(f"  run {i}: CPU {run['cpu_seconds']:.3f} s, wall "
                     f"{run['wall_seconds']:.3f} s: {routes or 'no requests'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; exit 1 when it could not run."""
    return bench_main("bench/idle.py", parse_args(argv), run_benchmark, render_text)


if __name__ == "__main__":
    sys.exit(main())
