"""The export benchmark runs end to end, so it cannot rot unnoticed (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "export.py"


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True,
                          text=True, timeout=300)


def test_export_benchmark_reports_its_figures() -> None:
    result = run_bench("--customers", "300", "--subscribers", "60", "--latency", "1",
                       "--json")
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    assert f["magento_records"] == 360
    # one contact per customer plus one per guest subscriber, all of them in Emarsys
    assert f["contacts_sent"] == f["expected_contacts"] == f["emarsys_contacts"]
    assert f["expected_contacts"] == 300 + f["guest_subscribers"]
    assert f["requests"]["magento"] > 0 and f["requests"]["emarsys"] > 0
    assert f["requests_by_route"]["magento"]["GET /rest/all/V1/customers/search"] >= 2
    assert f["requests_by_route"]["emarsys"]["PUT /api/v2/contact/"] >= 1
    assert f["peak_rss_kb"] > 0
    assert f["bound_seconds"] > 0 and f["contacts_per_second"] > 0
    assert (f["page_size"], f["emarsys_concurrency"]) == (300, 4)


def test_benchmark_passes_options_into_the_config() -> None:
    result = run_bench("--customers", "30", "--subscribers", "4", "--page-size", "10",
                       "--magento-concurrency", "1", "--emarsys-concurrency", "2",
                       "--one-sandbox-process", "--json")
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    assert (f["page_size"], f["magento_concurrency"], f["emarsys_concurrency"]) == (10, 1, 2)
    # 30 customers in pages of 10 need at least 3 search requests
    assert f["requests_by_route"]["magento"]["GET /rest/all/V1/customers/search"] >= 3
    assert "bound_seconds" not in f  # no latency, no bound
    assert f["contacts_sent"] == f["expected_contacts"] == f["emarsys_contacts"]


def test_benchmark_reports_a_failed_export() -> None:
    # page_size 301 is out of range: magsync refuses the config (exit 2), the bench says so
    result = run_bench("--customers", "5", "--subscribers", "1", "--page-size", "301")
    assert result.returncode == 1
    assert "export-initial exited 2" in result.stderr
