"""`--log-json`: one JSON object per log event on stderr, for a real sync run."""

from __future__ import annotations

import json
from typing import Any


def test_log_json_events_for_a_run(magsync: Any) -> None:
    r = magsync("--log-json", "export-initial")
    assert r.code == 0, r
    events = [json.loads(line) for line in r.err.splitlines() if line.strip()]
    assert events, "no log events"
    assert all({"time", "level", "event"} <= set(e) for e in events)
    finished = [e for e in events if e["event"] == "export-initial finished: ok"]
    assert len(finished) == 1
    assert finished[0]["counts"]["sent"] == finished[0]["counts"]["read"] > 0
    assert finished[0]["exit_code"] == 0
    assert any(e["event"] == "export-initial started" for e in events)


def test_quiet_run_prints_nothing(magsync: Any) -> None:
    r = magsync("-q", "export-initial")
    assert (r.code, r.out, r.err) == (0, "", "")


def test_global_options_after_the_command(magsync: Any) -> None:
    r = magsync("export-initial", "--dry-run", "-v")
    assert r.code == 0, r
    assert "sample payload:" in r.out
    r = magsync("status", "--json", "-q")
    assert r.code == 0 and r.out.startswith("{")


def test_partial_failure_speaks_on_stderr_even_under_quiet(magsync: Any, pair: Any) -> None:
    pair.emarsys.inject_contact_error(7001, 1, 2007, "Invalid value")
    r = magsync("-q", "export-initial")
    assert r.code == 1
    assert r.out == ""
    assert r.err.startswith("magsync: export-initial: 1 contact(s) failed: see `magsync queue "
                            "list`")
