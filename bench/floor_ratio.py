"""magsync's CPU per exported contact against the Python floor, measured in one run.

    python bench/floor_ratio.py [--customers N] [--runs R] [--floor PATH] [--json]

Each round runs the floor (``shared/bench/floor.py``: decode, map, encode, hash and
SQLite per contact, nothing else; its ``filtered`` pages, which is what magsync receives)
right before ``bench/export.py`` on the same machine, and divides magsync's CPU per
exported contact by the floor's. Rounds alternate the two, so a machine that gets busier
or quieter between rounds moves both. Prints min / median / max over the rounds.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import BenchError, run_json, spread

HERE = Path(__file__).resolve().parent
# shared/ lies beside the repository (or beside a folder of worktrees)
FLOOR_CANDIDATES = tuple(parent / "shared" / "bench" / "floor.py" for parent in HERE.parents)


def find_floor(given: str | None) -> Path:
    for path in ([Path(given)] if given else FLOOR_CANDIDATES):
        if path.is_file():
            return path
    raise BenchError("floor.py not found (pass --floor PATH)")



def one_round(floor: Path, customers: int) -> dict[str, float]:
    f = run_json([sys.executable, str(floor), "--customers", str(customers), "--repeat", "1",
                  "--variant", "filtered", "--json"])
    e = run_json([sys.executable, str(HERE / "export.py"), "--customers", str(customers),
                  "--json"])
    floor_us = f["runs"]["filtered"][0]["total"]
    magsync_us = e["magsync_cpu_seconds"] * 1e6 / max(1, e["contacts_sent"])
    return {"floor_us": floor_us, "magsync_us": magsync_us, "ratio": magsync_us / floor_us,
            "peak_rss_mb": e["peak_rss_mb"], "wall_seconds": e["wall_seconds"],
            "magsync_cpu_seconds": e["magsync_cpu_seconds"]}



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="magsync CPU per contact / the Python floor.")
    p.add_argument("--customers", type=int, default=100000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--floor", default=None, help="path of shared/bench/floor.py")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        floor = find_floor(args.floor)
        rounds = [one_round(floor, args.customers) for _ in range(args.runs)]
    except BenchError as exc:
        print(f"bench/floor_ratio.py: {exc}", file=sys.stderr)
        return 1
    summary = {k: spread([r[k] for r in rounds], digits=None) for k in rounds[0]}
    if args.json:
        print(json.dumps({"customers": args.customers, "rounds": rounds,
                          "summary": summary}, indent=2))
        return 0
    print(f"{args.customers} customers, {args.runs} rounds (floor, then export): "
          "min / median / max")
    for key, label in (("floor_us", "floor, µs CPU per contact"),
                       ("magsync_us", "magsync, µs CPU per contact"),
                       ("ratio", "magsync / floor"), ("peak_rss_mb", "magsync peak RSS, MB")):
        s = summary[key]
        print(f"  {label:30s} {s['min']:7.2f} {s['median']:7.2f} {s['max']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
