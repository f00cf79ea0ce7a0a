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
    # the wall time splits into start-up, Magento's span and the tail, each inside it
    parts = [f["startup_seconds"], f["magento_span_seconds"], f["tail_seconds"]]
    assert all(0 < part < f["wall_seconds"] for part in parts), parts
    assert abs(sum(parts) - f["wall_seconds"]) < 0.01, parts


def test_benchmark_passes_options_into_the_config() -> None:
    result = run_bench("--customers", "30", "--subscribers", "4", "--page-size", "10",
                       "--magento-concurrency", "1", "--emarsys-concurrency", "2",
                       "--one-sandbox-process", "--json")
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    assert (f["page_size"], f["magento_concurrency"], f["emarsys_concurrency"]) == (10, 1, 2)
    # 30 customers in pages of 10 need at least 3 search requests
    assert f["requests_by_route"]["magento"]["GET /rest/all/V1/customers/search"] >= 3
    assert "bound_seconds" not in f and "tail_seconds" not in f  # no latency, no bound
    assert f["contacts_sent"] == f["expected_contacts"] == f["emarsys_contacts"]


def test_benchmark_reports_a_failed_export() -> None:
    # page_size 301 is out of range: magsync refuses the config (exit 2), the bench says so
    result = run_bench("--customers", "5", "--subscribers", "1", "--page-size", "301")
    assert result.returncode == 1
    assert "export-initial exited 2" in result.stderr


def test_peak_rss_is_the_measured_childs_own() -> None:
    """wait4's ru_maxrss keeps the parent's RSS at fork across exec: a benchmark holding
    a large shop would report its own size for the child. The child reports VmHWM."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        import common  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BENCH.parent))
    held = bytearray(300 * 1024 * 1024)  # touched: resident in this process
    for i in range(0, len(held), 4096):
        held[i] = 1
    child = common.run_measured([sys.executable, "-m", "platform"])
    assert child.exit_code == 0 and child.stdout.strip()
    assert "VmHWM" not in child.stderr
    assert 0 < child.peak_rss_kb < 200 * 1024
    del held


FLOOR = next((p / "shared" / "bench" / "floor.py" for p in BENCH.parents
              if (p / "shared" / "bench" / "floor.py").is_file()), None)


def test_floor_ratio_reports_both_figures() -> None:
    if FLOOR is None:
        import pytest
        pytest.skip("shared/bench/floor.py is not beside the repository")
    result = subprocess.run([sys.executable, str(BENCH.parent / "floor_ratio.py"),
                             "--customers", "300", "--runs", "1", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    (r,) = f["rounds"]
    assert r["floor_us"] > 0 and r["magsync_us"] > 0
    assert abs(r["ratio"] - r["magsync_us"] / r["floor_us"]) < 1e-9


def test_http_cost_reports_the_transport_apart_from_the_json() -> None:
    result = subprocess.run([sys.executable, str(BENCH.parent / "http_cost.py"),
                             "--customers", "900", "--batch", "50", "--rounds", "1",
                             "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    (r,) = f["rounds"]
    assert r["pages"] == 4  # 900 customers in pages of 300, the last one empty
    for request in ("magento_page", "emarsys_upsert", "emarsys_getdata"):
        assert r[f"{request}_us"] > r[f"{request}_json_us"] > 0, request
    assert r["transport_us_per_contact"] > 0


def test_scaling_reports_large_over_small() -> None:
    result = subprocess.run([sys.executable, str(BENCH.parent / "scaling.py"),
                             "--small", "200", "--large", "400", "--runs", "1",
                             "--startup-runs", "1", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    (r,) = f["rounds"]
    assert abs(r["whole"] - r["large_us"] / r["small_us"]) < 1e-2
    assert abs(r["after_startup"] - r["large_after_startup_us"]
               / r["small_after_startup_us"]) < 1e-2
    assert f["startup_cpu_seconds"] > 0
