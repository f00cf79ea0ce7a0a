"""Monitoring (SPEC section 9) through the CLI: the Prometheus textfile written after every
writing run (parsed back with prometheus_client's own parser) and the healthchecks-style
pings, received by a loopback server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from magsync.ops.metrics import METRIC_NAMES
from magsync.ops.pings import Pinger
from magsync.sandbox.pair import SandboxPair
from magsync.state.lock import StateLock
from tests.helpers.export_checks import CUSTOMER_KEY
from tests.helpers.pings import PingServer
from tests.helpers.sandbox import clock_behind

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def read_metrics(path: Path) -> Samples:
    """Every sample of the textfile: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    want = frozenset({"config": "magsync", **labels}.items())
    return samples.get((name, want))


def write(pair: SandboxPair, tmp_path: Path, name: str = "magsync.yaml", **monitoring: Any
          ) -> Path:
    return pair.write_config(tmp_path / name, tmp_path / f"{Path(name).stem}.db",
                             monitoring=monitoring)


def reject_one(pair: SandboxPair) -> int:
    """Make Emarsys reject one customer, and edit it so the next sync sends it."""
    shop = pair.magento.shop
    clock_behind(shop)
    cid = min(shop.customers)
    pair.emarsys.inject_contact_error(int(CUSTOMER_KEY), cid, 2010, "More than one contact")
    shop.edit_customer(cid, firstname="Rejected")
    return cid


# -- the textfile ---------------------------------------------------------------------------


def test_every_writing_run_leaves_the_metrics_of_every_command(
        magsync: Any, pair: SandboxPair, tmp_path: Path) -> None:
    prom = tmp_path / "textfile" / "magsync.prom"
    prom.parent.mkdir()
    config = write(pair, tmp_path, textfile=str(prom))

    assert magsync("export-initial", config=config).code == 0
    first = read_metrics(prom)
    assert value(first, "magsync_last_run_exit_code", command="export-initial") == 0
    assert value(first, "magsync_last_run_contacts", command="export-initial",
                 result="created") == len(pair.emarsys.account.contacts)
    export_success = value(first, "magsync_last_success_timestamp_seconds",
                           command="export-initial")
    assert export_success is not None and export_success > 0
    assert value(first, "magsync_queue_contacts", state="queued") == 0
    assert value(first, "magsync_queue_oldest_age_seconds") == 0
    for mark in ("sync-realtime", "sync-background"):
        assert value(first, "magsync_watermark_timestamp_seconds", watermark=mark)

    reject_one(pair)
    assert magsync("sync-realtime", config=config).code == 1
    second = read_metrics(prom)
    # both commands' last runs are in the file, not only the one that just ran
    assert value(second, "magsync_last_run_exit_code", command="export-initial") == 0
    assert value(second, "magsync_last_run_exit_code", command="sync-realtime") == 1
    assert value(second, "magsync_last_run_contacts", command="sync-realtime",
                 result="failed") == 1
    start = value(second, "magsync_last_run_start_timestamp_seconds", command="sync-realtime")
    end = value(second, "magsync_last_run_end_timestamp_seconds", command="sync-realtime")
    duration = value(second, "magsync_last_run_duration_seconds", command="sync-realtime")
    assert start is not None and end is not None and duration is not None
    assert start <= end and duration == pytest.approx(end - start, abs=1e-3)
    # exit 1 is a success: the run did its work and queued what Emarsys rejected
    assert value(second, "magsync_last_success_timestamp_seconds", command="sync-realtime")
    assert value(second, "magsync_queue_contacts", state="queued") == 1
    assert value(second, "magsync_queue_contacts", state="dead") == 0
    assert {name for name, _ in second} <= set(METRIC_NAMES)
    assert all(dict(labels)["config"] == "magsync" for _, labels in second)


def test_a_failed_run_is_in_the_file_and_keeps_the_last_success(
        magsync: Any, pair: SandboxPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    prom = tmp_path / "magsync.prom"
    config = write(pair, tmp_path, textfile=str(prom))
    assert magsync("export-initial", config=config).code == 0
    assert magsync("sync-realtime", config=config).code == 0
    success = value(read_metrics(prom), "magsync_last_success_timestamp_seconds",
                    command="sync-realtime")
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0")
    # Magento: a sync-realtime with nothing to send asks Emarsys nothing (its fields and
    # lists come from the state file's copy), so an Emarsys outage could not fail it.
    pair.magento.fail_next(50, 503)

    assert magsync("sync-realtime", config=config).code == 3

    after = read_metrics(prom)
    assert value(after, "magsync_last_run_exit_code", command="sync-realtime") == 3
    assert value(after, "magsync_last_success_timestamp_seconds",
                 command="sync-realtime") == success


def test_the_file_is_replaced_whole_by_a_rename(magsync: Any, pair: SandboxPair,
                                                tmp_path: Path) -> None:
    folder = tmp_path / "textfile"
    folder.mkdir()
    prom = folder / "magsync.prom"
    config = write(pair, tmp_path, textfile=str(prom))
    assert magsync("export-initial", config=config).code == 0
    before = prom.stat().st_ino
    assert magsync("sync-realtime", config=config).code == 0
    assert prom.stat().st_ino != before  # a new file renamed over the old one
    assert sorted(p.name for p in folder.iterdir()) == ["magsync.prom"]  # no temp file left


def test_two_configs_on_one_host_write_distinct_series(magsync: Any, pair: SandboxPair,
                                                        tmp_path: Path) -> None:
    prom = {name: tmp_path / f"{name}.prom" for name in ("shop-de", "shop-fr")}
    for name, path in prom.items():
        config = write(pair, tmp_path / name, f"{name}.yaml", textfile=str(path))
        assert magsync("export-initial", "--dry-run", config=config).code == 0
        assert not path.exists()  # a dry run writes nothing anywhere
        assert magsync("export-initial", config=config).code == 0
    for name, path in prom.items():
        labels = {dict(labels)["config"] for _, labels in read_metrics(path)}
        assert labels == {name}


def test_no_metrics_for_a_minute_skipped_by_the_lock(magsync: Any, pair: SandboxPair,
                                                      tmp_path: Path) -> None:
    prom = tmp_path / "magsync.prom"
    with PingServer() as hc:
        config = write(pair, tmp_path, textfile=str(prom),
                       ping_urls={"sync-realtime": hc.url("check-1")})
        with StateLock(tmp_path / "magsync.db", command="export-initial"):
            result = magsync("sync-realtime", config=config)
        assert result.code == 75, result
        assert not prom.exists() and hc.paths == []


def test_a_metrics_file_that_cannot_be_written_is_a_warning(magsync: Any, pair: SandboxPair,
                                                            tmp_path: Path) -> None:
    config = write(pair, tmp_path, textfile=str(tmp_path / "missing-dir" / "magsync.prom"))
    result = magsync("export-initial", config=config)
    assert result.code == 0, result
    assert "WARNING: could not write the metrics file" in result.err


# -- pings ----------------------------------------------------------------------------------


def test_a_successful_run_pings_start_then_success(magsync: Any, pair: SandboxPair,
                                                  tmp_path: Path) -> None:
    with PingServer() as hc:
        config = write(pair, tmp_path, ping_urls={"export-initial": hc.url("export-uuid"),
                                                  "sync-realtime": hc.url("rt-uuid")})
        assert magsync("export-initial", config=config).code == 0
        assert hc.paths == ["/ping/export-uuid/start", "/ping/export-uuid"]
        reject_one(pair)
        assert magsync("sync-realtime", config=config).code == 1
        assert hc.paths[2:] == ["/ping/rt-uuid/start", "/ping/rt-uuid/1"]
        # a command without a ping URL sends none
        assert magsync("pull-optin", config=config).code == 0
        assert len(hc.paths) == 4


def test_a_failed_run_pings_its_exit_code(magsync: Any, pair: SandboxPair, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0")
    pair.emarsys.fail_next_error(50, 503)
    with PingServer() as hc:
        config = write(pair, tmp_path, ping_urls={"export-initial": hc.url("uuid")})
        assert magsync("export-initial", config=config).code == 3
        assert hc.paths == ["/ping/uuid/start", "/ping/uuid/3"]


def test_no_ping_when_the_config_does_not_load(magsync: Any, pair: SandboxPair,
                                               tmp_path: Path) -> None:
    with PingServer() as hc:
        config = pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db",
                                   monitoring={"ping_urls": {"sync-realtime": hc.url("u")}},
                                   sync={"mode": "sometimes"})
        assert magsync("sync-realtime", config=config).code == 2
        assert hc.paths == []


def test_a_failing_ping_is_a_warning_that_never_shows_the_url(
        magsync: Any, pair: SandboxPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "1")  # the ping budget too
    with PingServer(status=500) as hc:
        url = hc.url("d8f1c0de-secret-check-uuid")
        config = write(pair, tmp_path, ping_urls={"export-initial": url})
        result = magsync("export-initial", config=config)
        assert result.code == 0, result  # the run's outcome is its own
        assert result.err.count(f"monitoring ping (start) of export-initial to {hc.origin} "
                                "failed: HTTP 500 (") == 1
        assert "monitoring ping (exit 0) of export-initial" in result.err
        assert "d8f1c0de" not in result.out + result.err
        for command in (("status",), ("check",), ("sync-realtime", "-v")):
            seen = magsync(*command, config=config)
            assert "d8f1c0de" not in seen.out + seen.err


def test_a_ping_to_nowhere_is_a_warning(magsync: Any, pair: SandboxPair, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "1")
    with PingServer() as hc:
        url = hc.url("gone")
    config = write(pair, tmp_path, ping_urls={"export-initial": url})  # nobody listens now
    result = magsync("export-initial", config=config)
    assert result.code == 0, result
    assert "monitoring ping (start) of export-initial to http://127.0.0.1:" in result.err


def test_a_ping_never_takes_longer_than_its_budget(capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    from magsync.util.logs import setup_logging

    setup_logging()
    with PingServer(delay=3) as hc:
        pinger = Pinger("sync-realtime", _secret(hc.url("slow")), budget=0.3)
        pinger.start()
        pinger.finish(0)
        for thread in pinger.threads:
            thread.join()
        assert hc.paths == ["/ping/slow/start", "/ping/slow"]
    err = capsys.readouterr().err
    assert "monitoring ping (start) of sync-realtime to http://127.0.0.1:" in err
    assert "failed: timed out" in err and "slow" not in err


def _secret(url: str) -> Any:
    from magsync.config import Secret

    return Secret(url)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(("monitoring", "problem"), [
    ({"ping_urls": {"sync-realtim": "https://hc-ping.com/x"}},
     "monitoring.ping_urls.sync-realtim: unknown key (did you mean 'sync-realtime'?)"),
    ({"ping_urls": {"status": "https://hc-ping.com/x"}},
     "monitoring.ping_urls.status: unknown key"),
    ({"ping_urls": {"sync-realtime": "http://hc-ping.com/secret-uuid"}},
     "monitoring.ping_urls.sync-realtime: must start with https://; http:// is allowed only "
     "for a loopback host (127.0.0.1, ::1, localhost): credentials never travel unencrypted"),
    ({"ping_urls": {"sync-realtime": "hc-ping.com/secret-uuid"}},
     "monitoring.ping_urls.sync-realtime: must be an http(s) URL"),
    ({"ping_urls": ["https://hc-ping.com/x"]},
     "monitoring.ping_urls: must be a mapping of command -> URL, not a list"),
    ({"textfile": "/var/lib/node-exporter/magsync.txt"},
     "monitoring.textfile: must end in .prom"),
    ({"textfil": "/x.prom"}, "monitoring.textfil: unknown key (did you mean 'textfile'?)"),
])
def test_monitoring_config_is_validated(magsync: Any, pair: SandboxPair, tmp_path: Path,
                                        monitoring: dict[str, Any], problem: str) -> None:
    config = pair.write_config(tmp_path / "magsync.yaml", monitoring=monitoring)
    result = magsync("check", config=config)
    assert result.code == 2
    assert problem in result.out
    assert "secret-uuid" not in result.out + result.err


def test_loopback_ping_urls_may_use_http_and_a_relative_textfile_is_beside_the_config(
        pair: SandboxPair, tmp_path: Path) -> None:
    from magsync.config import load_config

    config = pair.write_config(tmp_path / "conf" / "magsync.yaml", monitoring={
        "textfile": "metrics/magsync.prom",
        "ping_urls": {"sync-realtime": "http://localhost:8000/ping/a",
                      "pull-optin": "http://[::1]:8000/ping/b",
                      "sync-background": "https://hc-ping.com/c"}})
    cfg = load_config(config)
    assert cfg.monitoring.textfile == tmp_path / "conf" / "metrics" / "magsync.prom"
    assert [c for c, _ in cfg.monitoring.ping_urls] == ["sync-realtime", "sync-background",
                                                        "pull-optin"]
    assert "hc-ping.com/c" not in repr(cfg)  # a Secret never prints itself
    os.environ.pop("MAGSYNC_STATE", None)


@pytest.mark.parametrize("command", ["sync-realtime", "sync-background", "pull-optin",
                                     "reconcile"])
def test_a_dry_run_pings_nothing_and_writes_no_metrics(magsync: Any, pair: SandboxPair,
                                                        tmp_path: Path, command: str) -> None:
    prom = tmp_path / "magsync.prom"
    with PingServer() as hc:
        config = write(pair, tmp_path, textfile=str(prom),
                       ping_urls={command: hc.url("uuid")})
        assert magsync("export-initial", config=config).code == 0
        prom.unlink()

        assert magsync(command, "--dry-run", config=config).code == 0

        assert hc.paths == []
        assert not prom.exists()
