"""Benchmark ``magsync sync-realtime`` with ``subscribers: database`` on a real MariaDB.

    python bench/db_realtime.py [--subscribers N] [--changed M] [--customers C] [--index]
                                [--seed S] [--json]

Starts the tests' throwaway MariaDB (tests/helpers/mariadb.py) and the sandbox (in its own
process, serving the customers over REST), loads the sandbox shop's N subscriber rows into
the database, runs ``export-initial`` (measured apart), then flips the status of M rows as
Magento does (``change_status_at = UTC_TIMESTAMP()``; in the sandbox too, so customers'
``is_subscribed`` agrees) and runs one ``sync-realtime`` as a measured child. Reports what
the run asked of the database (SELECT statements, rows returned, rows the server read: its
global ``Com_select`` and ``Rows_read`` counters, nothing else connects meanwhile), the
contacts it sent, wall time and peak RSS. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # magsync and tests.helpers from this checkout

from common import (  # noqa: E402
    SIDES,
    BenchError,
    ChildResult,
    Sandboxes,
    bench_main,
    magsync_json,
    run_magsync,
    tune_config,
)

from magsync.sandbox.magento.records import Subscriber  # noqa: E402
from tests.helpers.mariadb import (  # noqa: E402
    DATABASE,
    READER,
    MariaDB,
    ServerMissing,
    load_subscribers,
    running_mariadb,
)

PASSWORD_ENV = "MAGSYNC_BENCH_DB_PASSWORD"  # the children read it: no password in argv
COUNTERS = ("Com_select", "Rows_read", "Connections")
SUBSCRIBED, UNSUBSCRIBED = 1, 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark sync-realtime with subscribers: "
                                            "database.")
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument("--changed", type=int, default=1000,
                   help="subscriber rows whose status flips before the run (default 1000)")
    p.add_argument("--customers", type=int, default=None,
                   help="customers in the shop (default 3/5 of --subscribers)")
    p.add_argument("--index", action="store_true",
                   help="add an index on change_status_at first (Magento has none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.customers is None:
        args.customers = args.subscribers * 3 // 5
    return args


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start both servers, load, export, flip, run sync-realtime once, collect."""
    try:
        with running_mariadb() as server, \
                Sandboxes(customers=args.customers, subscribers=args.subscribers,
                          config_path=workdir / "sandbox.yaml", seed=args.seed) as sandbox:
            return _measure(args, workdir, server, sandbox)
    except BenchError:
        raise
    except (ServerMissing, RuntimeError) as exc:  # no server, or it did not start
        raise BenchError(str(exc)) from exc


def _measure(args: argparse.Namespace, workdir: Path, server: MariaDB,
             sandbox: Sandboxes) -> dict[str, Any]:
    rows = [Subscriber(**r) for r in sandbox.control("magento", "GET", "shop/subscribers")]
    load_subscribers(server, rows)
    if args.index:
        server.sql("CREATE INDEX bench_change_status_at ON newsletter_subscriber "
                   "(change_status_at)", database=DATABASE)
    config = _config(workdir, server)
    export, export_rss = _run(config, "export-initial")
    flipped = flip_statuses(server, sandbox, rows, args.changed, args.seed)
    before = server_counters(server), {side: sandbox.stats(side) for side in SIDES}
    child, rss = _run(config, "sync-realtime")
    after = server_counters(server), {side: sandbox.stats(side) for side in SIDES}
    counts = magsync_json(config, "status", "--json")["runs"]["sync-realtime"]["counts"]
    database = {k: after[0][k] - before[0][k] for k in COUNTERS}
    return {
        "server": server.sql("SELECT VERSION()")[0][0], "subscribers": len(rows),
        "customers": args.customers, "changed": flipped, "index": args.index,
        "exit_code": child.exit_code, "counts": counts,
        # minus the connection that read the counters after the run
        "database": {"connections": database["Connections"] - 1,
                     "selects": database["Com_select"],
                     "rows_returned": int(counts.get("subscribers_changed", 0)),
                     "full_read": "subscribers_read" in counts,
                     "server_rows_read": database["Rows_read"]},
        "contacts_sent": int(counts.get("sent", 0)),
        "requests": {side: after[1][side]["total"] - before[1][side]["total"]
                     for side in SIDES},
        "wall_seconds": round(child.wall_seconds, 3),
        "magsync_cpu_seconds": round(child.cpu_seconds, 3),
        "peak_rss_mb": rss,
        "export": {"wall_seconds": round(export.wall_seconds, 3), "peak_rss_mb": export_rss},
    }


def _config(workdir: Path, server: MariaDB) -> Path:
    """The sandbox's config with ``subscribers: database`` as the read-only user."""
    os.environ[PASSWORD_ENV] = server.passwords[READER]
    url = server.url(READER, password="PASSWORD").replace(":PASSWORD@",
                                                          f":${{{PASSWORD_ENV}}}@", 1)
    config = workdir / "bench.yaml"
    tune_config(workdir / "sandbox.yaml", config, workdir / "state.db", {
        "magento": {"page_size": 300, "subscribers": "database", "database": {"url": url}},
        "emarsys": {"requests_per_minute": 100000},
        # the export's full read is recent: this run reads only the changed rows
        "sync": {"subscriber_scan_minutes": 60}})
    return config



def _run(config: Path, command: str) -> tuple[ChildResult, float]:
    """``magsync COMMAND`` as a measured child (1: some contacts were rejected and queued),
    with its own peak RSS in MB."""
    child = run_magsync(config, command, ok=(0, 1))
    return child, round(child.peak_rss_kb / 1024, 1)


def flip_statuses(server: MariaDB, sandbox: Sandboxes, rows: list[Subscriber], n: int,
                  seed: int) -> int:
    """Flip subscribed <-> unsubscribed on ``n`` sampled rows, in the database as Magento
    does and in the sandbox shop; the count flipped."""
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    changes = [(UNSUBSCRIBED if r.subscriber_status == SUBSCRIBED else SUBSCRIBED,
                r.subscriber_id) for r in picked]
    conn = server.admin(DATABASE)
    try:
        with conn.cursor() as cur:
            cur.executemany("UPDATE newsletter_subscriber SET subscriber_status = %s, "
                            "change_status_at = UTC_TIMESTAMP() WHERE subscriber_id = %s",
                            changes)
    finally:
        conn.close()
    for status, sid in changes:
        sandbox.control("magento", "POST", f"shop/subscribers/{sid}", {"status": status})
    return len(changes)


def server_counters(server: MariaDB) -> dict[str, int]:
    """The server's global counters (SHOW STATUS itself moves none of them)."""
    marks = ", ".join(f"'{name}'" for name in COUNTERS)
    return {name: int(value) for name, value in server.sql(
        f"SHOW GLOBAL STATUS WHERE Variable_name IN ({marks})")}


def render(f: dict[str, Any]) -> list[str]:
    db = f["database"]
    index = "with an index on change_status_at" if f["index"] else \
        "no index on change_status_at (as Magento)"
    return [
        f"{f['server']}: {f['subscribers']} subscribers, {f['customers']} customers; "
        f"{f['changed']} statuses flipped, {index}",
        f"sync-realtime: {f['contacts_sent']} contacts sent in {f['wall_seconds']:.2f} s "
        f"(magsync CPU {f['magsync_cpu_seconds']:.2f} s, peak RSS {f['peak_rss_mb']} MB, "
        f"exit {f['exit_code']})",
        f"  database: {db['selects']} SELECT(s) on {db['connections']} connection(s), "
        f"{db['rows_returned']} rows returned, full read: {'yes' if db['full_read'] else 'no'}"
        f"; the server read {db['server_rows_read']} rows",
        f"  requests: Magento {f['requests']['magento']}, Emarsys {f['requests']['emarsys']}",
        f"  (export-initial before it: {f['export']['wall_seconds']:.2f} s, peak RSS "
        f"{f['export']['peak_rss_mb']} MB)",
    ]


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench/db_realtime.py", parse_args(argv), run_benchmark, render)


if __name__ == "__main__":
    sys.exit(main())
