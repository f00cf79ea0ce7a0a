"""The database benchmark runs end to end, so it cannot rot unnoticed (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.mariadb import require_mariadb

BENCH = Path(__file__).resolve().parent.parent / "bench" / "db_subscribers.py"


def test_db_benchmark_reports_its_figures() -> None:
    require_mariadb()
    result = subprocess.run([sys.executable, str(BENCH), "--subscribers", "300", "--changed",
                             "20", "--page-size", "40", "--json"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    assert (f["subscribers"], f["changed"]) == (300, 20)
    assert f["full_read"]["rows"] == 300 and f["full_read"]["queries"] == 8
    assert f["change_read"]["rows"] == 20 and f["change_read"]["queries"] == 1
    assert f["change_read"]["server_rows_read"] >= 300  # no index: the table is walked
    assert f["full_read"]["peak_rss_kb"] > 0


REALTIME = BENCH.with_name("db_realtime.py")


def test_db_realtime_benchmark_reads_only_the_changed_rows() -> None:
    require_mariadb()
    result = subprocess.run([sys.executable, str(REALTIME), "--subscribers", "200",
                             "--changed", "15", "--json"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    assert (f["subscribers"], f["changed"], f["exit_code"]) == (200, 15, 0)
    db = f["database"]
    # one change read: one SELECT returning the flipped rows, no full read
    assert (db["selects"], db["rows_returned"], db["full_read"]) == (1, 15, False)
    assert db["server_rows_read"] >= 200  # no index on change_status_at: a table walk
    assert f["contacts_sent"] == 15
