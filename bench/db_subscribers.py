"""Benchmark the database subscriber source (``subscribers: database``) on a real MariaDB.

    python bench/db_subscribers.py [--subscribers N] [--changed M] [--page-size P]
                                   [--seed S] [--json]

Starts the tests' throwaway MariaDB (tests/helpers/mariadb.py), loads N sandbox subscriber
rows, gives M of them a new status in a one-hour window after every other timestamp, then
measures in a child process each: (a) a full read (``iter_subscribers_db``) and (b) the
change read of that window (``iter_changed_subscribers``): rows, queries, the rows the
server read for them, wall time, CPU and peak RSS. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # magsync and tests.helpers from this checkout

from common import BenchError, ChildResult, run_main, run_measured  # noqa: E402

from magsync.magento.database import Database, DatabaseSettings  # noqa: E402
from magsync.magento.subscriber_db import (  # noqa: E402
    PAGE_SIZE,
    iter_changed_subscribers,
    iter_subscribers_db,
)
from magsync.sandbox.magento.shop_gen import generate_records  # noqa: E402
from tests.helpers.mariadb import (  # noqa: E402
    READER,
    MariaDB,
    ServerMissing,
    load_subscribers,
    running_mariadb,
)

URL_ENV = "MAGSYNC_BENCH_DB_URL"  # the child's URL: a password has no place in argv
ANCHOR = datetime(2026, 5, 1, tzinfo=timezone.utc)  # every generated timestamp is before
WINDOW = timedelta(hours=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark the database subscriber source.")
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument("--changed", type=int, default=1000)
    p.add_argument("--page-size", type=int, default=PAGE_SIZE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", choices=("full", "changes"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, load the rows, change some, measure both reads."""
    try:
        with running_mariadb() as server:
            return _load_and_measure(server, args)
    except (ServerMissing, RuntimeError) as exc:  # no server, or it did not start
        raise BenchError(str(exc)) from exc


def _load_and_measure(server: MariaDB, args: argparse.Namespace) -> dict[str, Any]:
    version = server.sql("SELECT VERSION()")[0][0]
    _, rows = generate_records(args.subscribers * 3 // 5, args.subscribers, seed=args.seed,
                               anchor=ANCHOR)
    load_subscribers(server, rows)
    changed = sorted(random.Random(args.seed).sample([r.subscriber_id for r in rows],
                                                     min(args.changed, len(rows))))
    conn = server.admin("magento")  # a UTC session: the window is in UTC
    with conn.cursor() as cur:
        cur.executemany("UPDATE newsletter_subscriber SET subscriber_status = "
                        "IF(subscriber_status = 1, 3, 1), change_status_at = %s "
                        "WHERE subscriber_id = %s",
                        [(_in_window(i, len(changed)), sid) for i, sid in enumerate(changed)])
    conn.close()
    os.environ[URL_ENV] = server.url(READER)
    return {"server": version, "subscribers": len(rows), "changed": len(changed),
            "page_size": args.page_size, "full_read": _measure("full", args),
            "change_read": _measure("changes", args)}


def _in_window(i: int, n: int) -> datetime:
    return (ANCHOR + WINDOW * i / max(n, 1)).replace(tzinfo=None, microsecond=0)


def _measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    child: ChildResult = run_measured([sys.executable, __file__, "--child", mode,
                                       "--page-size", str(args.page_size)])
    if child.exit_code != 0:
        raise BenchError(f"the {mode} read exited {child.exit_code}: {child.stderr.strip()}")
    figures: dict[str, Any] = json.loads(child.stdout)
    # not child.peak_rss_kb: wait4's ru_maxrss keeps the parent's RSS at fork across exec
    # (this parent holds the generated rows), so the child reports its own VmHWM
    figures.update(process_wall_seconds=round(child.wall_seconds, 3),
                   cpu_seconds=round(child.cpu_seconds, 3))
    return figures


def child(mode: str, page_size: int) -> int:
    """One read in this process; its figures as JSON on stdout."""
    with Database(DatabaseSettings(url=os.environ[URL_ENV])) as db:
        first = _rows_read(db)
        queries = db.stats.queries
        started = time.perf_counter()
        if mode == "full":
            rows = sum(1 for _ in iter_subscribers_db(db, page_size=page_size))
        else:
            rows = sum(1 for _ in iter_changed_subscribers(db, ANCHOR, ANCHOR + WINDOW,
                                                           page_size=page_size))
        seconds = time.perf_counter() - started
        queries = db.stats.queries - queries
        server_rows = _rows_read(db) - first
    print(json.dumps({"rows": rows, "queries": queries, "read_seconds": round(seconds, 3),
                      "server_rows_read": server_rows, "peak_rss_kb": _peak_rss_kb()}))
    return 0


def _peak_rss_kb() -> int:
    """This process's own peak RSS since its exec (Linux ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _rows_read(db: Database) -> int:
    """MariaDB's count of rows this session read from tables (the store lookups too; not
    SHOW STATUS's own temporary table)."""
    return int(db.query("SHOW SESSION STATUS LIKE 'Rows_read'")[0][1])


def render(f: dict[str, Any]) -> list[str]:
    full, changes = f["full_read"], f["change_read"]
    return [
        f"{f['server']}: {f['subscribers']} subscribers, {f['changed']} changed, "
        f"page size {f['page_size']}",
        f"full read:   {full['rows']} rows in {full['queries']} queries, read "
        f"{full['read_seconds']:.2f} s (process {full['process_wall_seconds']:.2f} s, "
        f"CPU {full['cpu_seconds']:.2f} s), peak RSS {full['peak_rss_kb'] / 1024:.1f} MB, "
        f"server read {full['server_rows_read']} rows",
        f"change read: {changes['rows']} rows in {changes['queries']} queries, read "
        f"{changes['read_seconds']:.2f} s, peak RSS {changes['peak_rss_kb'] / 1024:.1f} MB, "
        f"server read {changes['server_rows_read']} rows (no index on change_status_at)",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child, args.page_size)
    return run_main("db_subscribers", args.json, lambda _tmp: run(args), render)


if __name__ == "__main__":
    sys.exit(main())
