"""A full ``magsync demo`` with ``monitoring.textfile`` set leaves a valid metrics file
holding every command it ran."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from magsync.ops.metrics import METRIC_NAMES


def test_demo_with_a_textfile_leaves_valid_metrics(tmp_path: Path) -> None:
    from magsync.cli import run
    from magsync.ops.demo import run_demo

    prom = tmp_path / "magsync.prom"
    lines: list[str] = []
    assert run_demo(lines.append, run, sections={"monitoring": {"textfile": str(prom)}}) == 0

    exit_codes: dict[str, float] = {}
    queue: dict[str, float] = {}
    for family in text_string_to_metric_families(prom.read_text()):
        assert family.name in METRIC_NAMES or f"{family.name}_total" in METRIC_NAMES
        for sample in family.samples:
            assert sample.labels["config"] == "magsync"
            if sample.name == "magsync_last_run_exit_code":
                exit_codes[sample.labels["command"]] = sample.value
            if sample.name == "magsync_queue_contacts":
                queue[sample.labels["state"]] = sample.value
    # the demo's sync-realtime exits 1 (a rejected contact), sync-background drains it
    assert exit_codes == {"export-initial": 0, "sync-realtime": 1, "pull-optin": 0,
                          "sync-background": 0}
    assert queue == {"queued": 0, "dead": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["magsync.prom"]
