"""The sync-realtime benchmark runs end to end, so it cannot rot unnoticed (no timing
asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench" / "sync.py"
SUBSCRIPTIONS = "GET /rest/all/V1/emarsys/subscriptions"


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True,
                          text=True, timeout=300)


def run_json(*args: str) -> dict[str, Any]:
    result = run_bench(*args, "--json")
    assert result.returncode == 0, result.stderr
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def test_sync_benchmark_reports_its_figures() -> None:
    f = run_json("--customers", "400", "--subscribers", "100", "--changes", "40",
                 "--latency", "1")
    assert f["customers_changed"] == 40 and f["subscribers_changed"] == 5  # 5% of 100
    assert f["exit_code"] == 0
    # the edited customers at least; flipped subscribers add their contacts (the run scans)
    assert f["contacts_sent"] >= 40
    assert f["contacts_sent"] == f["contacts_changed"]
    assert f["requests"]["magento"] > 0 and f["requests"]["emarsys"] > 0
    assert f["requests_by_route"]["magento"]["GET /rest/all/V1/customers/search"] >= 1
    assert f["requests_by_route"]["magento"][SUBSCRIPTIONS] >= 1
    assert f["requests_by_route"]["emarsys"]["PUT /api/v2/contact/"] >= 1
    assert f["peak_rss_kb"] > 0 and f["contacts_per_second"] > 0
    assert f["bound_seconds"] > 0
    # the export before it is reported apart and is not part of the request counts
    assert f["export"]["contacts_sent"] >= 400
    assert f["requests"]["emarsys"] < f["export"]["contacts_sent"]


def test_without_a_subscriber_scan_only_edited_customers_are_sent() -> None:
    f = run_json("--customers", "60", "--subscribers", "10", "--changes", "7",
                 "--subscriber-changes", "0", "--no-subscriber-scan")
    assert f["subscriber_scan"] is False and f["subscribers_changed"] == 0
    assert f["contacts_changed"] == f["contacts_sent"] == 7
    assert SUBSCRIPTIONS not in f["requests_by_route"]["magento"]
    assert "bound_seconds" not in f  # no latency, no bound


def test_sync_benchmark_text_output() -> None:
    result = run_bench("--customers", "30", "--subscribers", "6", "--changes", "3")
    assert result.returncode == 0, result.stderr
    assert "3 customers edited" in result.stdout
    assert "peak RSS of magsync" in result.stdout


def test_sync_benchmark_reports_a_failed_export() -> None:
    # page_size 301 is out of range: magsync refuses the config (exit 2), the bench says so
    result = run_bench("--customers", "5", "--subscribers", "1", "--page-size", "301")
    assert result.returncode == 1
    assert "export-initial exited 2" in result.stderr


def test_sync_benchmark_refuses_more_changes_than_customers() -> None:
    result = run_bench("--customers", "5", "--changes", "6")
    assert result.returncode == 2
    assert "--changes" in result.stderr
