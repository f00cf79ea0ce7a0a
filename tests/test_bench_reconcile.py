"""The reconcile benchmark runs end to end, so it cannot rot unnoticed (no timing
asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench" / "reconcile.py"


def run_json(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, str(BENCH), *args, "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def test_reconcile_benchmark_reports_its_figures() -> None:
    f = run_json("--customers", "400", "--subscribers", "80", "--deleted-percent", "5",
                 "--page-size", "50", "--latency", "1")
    assert f["customers_deleted"] == 20 and f["exit_code"] == 0
    assert f["counts"]["deletions_found"] == 20 and f["contacts_sent"] == 20
    assert f["counts"]["erased"] == 20 and f["deletions"]["erased"] == 20
    # id pages until an empty one, and one GET per candidate
    assert f["id_pages"] == f["expected_id_pages"] == 380 // 50 + 1 + 1
    assert f["customer_gets"] == f["expected_customer_gets"] == 20
    assert f["requests_by_route"]["emarsys"]["POST /api/v2/contact/delete"] == 1
    assert f["peak_rss_kb"] > 0 and f["export"]["peak_rss_mb"] > 0
    assert f["bound_seconds"] > 0


def test_reconcile_benchmark_in_keep_mode_deletes_nothing_in_emarsys() -> None:
    f = run_json("--customers", "60", "--subscribers", "10", "--deleted-percent", "10",
                 "--mode", "keep", "--one-sandbox-process")
    assert f["customers_deleted"] == 6 and f["deletions"]["marked"] == 6
    assert "POST /api/v2/contact/delete" not in f["requests_by_route"]["emarsys"]
    assert f["requests_by_route"]["emarsys"]["PUT /api/v2/contact/"] == 1
