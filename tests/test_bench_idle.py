"""The no-change sync-realtime benchmark runs end to end, so it cannot rot unnoticed (no
timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "idle.py"


def test_idle_benchmark_reports_each_run_and_asks_emarsys_nothing_once_warm() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--customers", "60", "--runs", "2",
                             "--json"], capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    assert len(f["runs"]) == 2
    assert f["cpu_seconds"]["min"] > 0 and f["floor"]["python_seconds"]["min"] > 0
    assert f["steady_emarsys_requests"]["max"] == 0  # the metadata came from the state file
    assert f["magento_requests"]["min"] >= 1  # the change window's search
    assert all(r["requests_by_route"]["magento"] for r in f["runs"])


def test_idle_benchmark_text_output() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--customers", "30", "--runs", "1"],
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sync-realtime with nothing to send: 30 customers")
    assert "CPU: min" in result.stdout
