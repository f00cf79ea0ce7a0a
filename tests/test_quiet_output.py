"""What cron sees (SPEC section 1, "Output and exit codes"): ``-q`` prints errors and each
distinct warning at most once a day, in both output formats; with ``--log-json`` every
stderr line is a JSON object, the final error too; a failure note is printed once; ``-q``
never hides what ``status``, ``queue list``, ``fields``, ``check`` or ``health`` print."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from magsync.sandbox.pair import SandboxPair
from magsync.util.timeutil import to_iso
from tests.helpers.export_checks import CUSTOMER_KEY
from tests.helpers.sandbox import clock_behind


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed as JSON (each must be one object)."""
    return [json.loads(line) for line in text.splitlines()]


def reject_one(pair: SandboxPair) -> None:
    shop = pair.magento.shop
    clock_behind(shop)
    cid = min(shop.customers)
    pair.emarsys.inject_contact_error(int(CUSTOMER_KEY), cid, 2010, "More than one contact")
    shop.edit_customer(cid, firstname="Rejected")


def test_log_json_quiet_on_a_clean_run_prints_nothing(magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    r = magsync("--log-json", "-q", "sync-realtime")
    assert (r.code, r.out, r.err) == (0, "", "")
    loud = magsync("--log-json", "sync-realtime")
    events = json_lines(loud.err)
    assert [e["event"] for e in events] == ["sync-realtime started",
                                            "sync-realtime finished: ok"]


def test_an_empty_run_says_so(magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    assert magsync("sync-realtime").code == 0  # diffs the mirror the export refreshed
    r = magsync("sync-realtime")
    assert r.code == 0
    assert r.out.startswith("sync-realtime: nothing to do ("), r.out


def test_a_failure_note_is_printed_once(magsync: Any, pair: SandboxPair) -> None:
    assert magsync("export-initial").code == 0
    reject_one(pair)
    r = magsync("sync-realtime")
    assert r.code == 1
    assert (r.out + r.err).count("1 contact(s) failed: see `magsync queue list`") == 1
    assert "magsync: sync-realtime: 1 contact(s) failed" in r.err  # cron mails stderr


def test_log_json_every_stderr_line_is_json_the_failure_too(magsync: Any,
                                                           pair: SandboxPair) -> None:
    assert magsync("export-initial").code == 0
    reject_one(pair)
    r = magsync("--log-json", "-q", "sync-realtime")
    assert r.code == 1 and r.out == ""
    events = json_lines(r.err)
    assert [e["level"] for e in events] == ["warning"] * len(events)
    assert events[0]["event"] == "sync-realtime: 1 contact(s) failed: see `magsync queue list`"
    assert events[0]["exit_code"] == 1


def test_log_json_final_errors_are_json(magsync: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    r = magsync("--log-json", "sync-realtime", config=missing)
    assert r.code == 2
    [event] = json_lines(r.err)
    assert event["level"] == "error" and event["exit_code"] == 2
    assert event["event"].startswith(f"error: config file {missing} not found")
    r = magsync("--log-json", "no-such-command", config=missing)
    assert r.code == 2
    [event] = json_lines(r.err)
    assert event["event"] == "No such command 'no-such-command'."
    assert event["usage"].startswith("Usage: magsync")


def test_quiet_shows_each_warning_once_a_day(magsync: Any, pair: SandboxPair,
                                             tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db")
    config.chmod(0o644)  # secrets inline, readable by others: a warning
    assert magsync("-q", "export-initial", config=config).err.count(
        "holds secrets inline and is readable by other users") == 1
    for args in (("-q",), ("-q", "--log-json")):
        r = magsync(*args, "sync-realtime", config=config)
        assert (r.code, r.out, r.err) == (0, "", ""), r  # shown today already
    memory = tmp_path / "state.db.warnings"
    shown = json.loads(memory.read_text())
    assert len(shown) == 1
    yesterday = to_iso(datetime.now(timezone.utc) - timedelta(hours=25))
    memory.write_text(json.dumps(dict.fromkeys(shown, yesterday)))
    r = magsync("-q", "--log-json", "sync-realtime", config=config)
    [event] = json_lines(r.err)
    assert event["level"] == "warning" and "readable by other users" in event["event"]
    # without -q every run shows it
    assert "readable by other users" in magsync("sync-realtime", config=config).err
    assert "readable by other users" in magsync("sync-realtime", config=config).err


def test_quiet_lock_held_is_silent(magsync: Any, tmp_path: Path, config_file: Path) -> None:
    from magsync.state.lock import StateLock

    with StateLock(tmp_path / "state.db", command="export-initial"):
        quiet = magsync("-q", "--log-json", "sync-realtime")
        loud = magsync("--log-json", "sync-realtime")
    assert (quiet.code, quiet.out, quiet.err) == (75, "", "")
    [event] = json_lines(loud.err)
    assert loud.code == 75 and "another magsync run holds the lock" in event["event"]


def test_quiet_never_hides_what_a_command_exists_to_print(magsync: Any,
                                                          pair: SandboxPair) -> None:
    assert magsync("export-initial").code == 0
    reject_one(pair)
    assert magsync("-q", "sync-realtime").code == 1
    queue = magsync("-q", "queue", "list")
    assert queue.code == 0 and f"c:{min(pair.magento.shop.customers)}" in queue.out
    fields = magsync("-q", "fields")
    assert fields.code == 0 and "Magento attribute" in fields.out
    status = magsync("-q", "status")
    assert "failsafe queue: 1 queued, 0 dead" in status.out


def test_quiet_check_prints_the_warn_and_fail_lines(magsync: Any, pair: SandboxPair,
                                                    tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db",
                               emarsys={"requests_per_minute": 5000},
                               contacts={"customers": {"fields": {"firstname": 999}}})
    r = magsync("-q", "check", config=config)
    assert r.code == 2
    lines = r.out.splitlines()
    assert [ln[:4] for ln in lines] == ["WARN", "FAIL"], r.out
    assert lines[1].startswith("FAIL Emarsys field for firstname — 999 does not exist")
    assert r.err == "magsync: 1 check failed\n"
    assert magsync("check", config=config).out.count("OK  ") > 3
