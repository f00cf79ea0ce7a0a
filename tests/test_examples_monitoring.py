"""The monitoring examples: the Prometheus alert rules and the Grafana dashboard use only
metrics magsync writes, with labels those metrics carry, and cover what they promise
(sync stale, queue growing, dead contacts; runs, contacts sent, queue depth, lag)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from magsync.ops.metrics import METRIC_NAMES, LastRun, StateSnapshot, build_registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
METRIC = re.compile(r"\b(magsync_[a-z_]+)\b")
SELECTOR = re.compile(r"\b(magsync_[a-z_]+)\{([^}]*)\}")
LABEL = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")


def written_labels() -> dict[str, set[str]]:
    """Each metric magsync writes, with its label names (from a real registry)."""
    at = datetime(2026, 5, 1, tzinfo=timezone.utc)
    snap = StateSnapshot(runs={"sync-realtime": LastRun(at, at, 0, {"sent": 1})},
                         successes={"sync-realtime": at}, queued=1, dead=1,
                         oldest_queued_at=at, watermarks={"sync-realtime": at})
    text = generate_latest(build_registry("magsync", snap)).decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    assert set(out) == set(METRIC_NAMES)
    return out


def check_expression(expr: str, labels: dict[str, set[str]]) -> set[str]:
    """The magsync metrics ``expr`` uses; each must be written, with known labels."""
    used = set(METRIC.findall(expr))
    assert used, f"no magsync metric in {expr!r}"
    assert used <= set(labels), f"{expr!r} uses {sorted(used - set(labels))}"
    for name, matchers in SELECTOR.findall(expr):
        names = set(LABEL.findall(matchers))
        assert names <= labels[name], f"{expr!r}: {name} has no label {names - labels[name]}"
    return used


def test_alert_rules_use_only_magsync_metrics() -> None:
    doc = yaml.safe_load((EXAMPLES / "prometheus" / "magsync-alerts.yml").read_text())
    labels = written_labels()
    rules = [r for group in doc["groups"] for r in group["rules"]]
    by_name = {r["alert"]: r for r in rules}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["annotations"]["summary"]
        check_expression(rule["expr"], labels)
    assert 'command="sync-realtime"' in by_name["MagsyncRealtimeStale"]["expr"]
    assert "magsync_last_success_timestamp_seconds" in by_name["MagsyncDailyStale"]["expr"]
    assert 'state="queued"' in by_name["MagsyncQueueGrowing"]["expr"]
    assert 'state="dead"' in by_name["MagsyncDeadContacts"]["expr"]


def _exprs(node: Any) -> list[str]:
    """Every PromQL expression in a Grafana dashboard (targets and template queries)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            promql = key in ("expr", "definition") or (key == "query" and "magsync_" in
                                                        str(value))
            if promql and isinstance(value, str):
                found.append(value)
            else:
                found += _exprs(value)
    elif isinstance(node, list):
        for item in node:
            found += _exprs(item)
    return found


def test_grafana_dashboard_uses_only_magsync_metrics() -> None:
    dash = json.loads((EXAMPLES / "grafana" / "magsync-dashboard.json").read_text())
    labels = written_labels()
    used: set[str] = set()
    for expr in _exprs(dash):
        used |= check_expression(expr, labels)
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("last success", "exit code", "contacts", "queue", "lag"):
        assert topic in titles
    assert {"magsync_last_run_exit_code", "magsync_last_run_contacts",
            "magsync_queue_contacts", "magsync_watermark_timestamp_seconds"} <= used
    assert all(p["targets"] for p in dash["panels"])
