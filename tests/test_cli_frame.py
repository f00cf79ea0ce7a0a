"""The CLI frame (magsync.cli): help for every command, the error boundary (exit codes,
--debug, -q), ``status`` on empty and populated state, and the lock through the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
import yaml

from magsync import __version__
from magsync.cli import cli, run
from magsync.errors import EXIT_CONFIG, EXIT_LOCKED
from magsync.model import ContactRecord, MirrorRow
from magsync.sandbox.pair import SandboxPair
from magsync.state import SCHEMA_VERSION, StateStore

T0 = datetime(2024, 5, 1, 10, 30, 0, tzinfo=timezone.utc)

# The real entry point with two extra commands, run in a child process so that the
# test process's command group stays as shipped.
CHILD = """
import sys
import click
from magsync.cli import cli, main

@cli.command("hold-lock")
@click.pass_context
def hold_lock(ctx):
    \"\"\"Take the run lock and hold it until stdin closes.\"\"\"
    with ctx.obj.writing("hold-lock") as store:
        store.start_run("hold-lock")
        print("locked", flush=True)
        sys.stdin.read()

@cli.command()
def crash():
    \"\"\"Fail like a bug would.\"\"\"
    raise RuntimeError("an unexpected bug")

main()
"""


def cli_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = proc.communicate(stdin, timeout=30)
    return proc.returncode, out, err


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid config whose state file is tmp_path/state.db."""
    monkeypatch.delenv("MAGSYNC_CONFIG", raising=False)
    monkeypatch.delenv("MAGSYNC_STATE", raising=False)
    monkeypatch.setenv("H6F_TOKEN", "frame-token-31337")
    monkeypatch.setenv("H6F_SECRET", "frame-secret-31337")
    path = tmp_path / "magsync.yaml"
    path.write_text(yaml.safe_dump({
        "magento": {"base_url": "http://127.0.0.1:9",
                    "auth": {"method": "bearer", "token": "${H6F_TOKEN}"}},
        "emarsys": {"auth": {"username": "frame-user", "secret": "${H6F_SECRET}"}},
        "state": {"path": str(tmp_path / "state.db")}}))
    path.chmod(0o600)
    return path


# -- help, version, usage errors -------------------------------------------------------------


def iter_commands(group: click.Group, prefix: tuple[str, ...] = ()
                  ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and subcommand, with the words that invoke it."""
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from iter_commands(command, (*prefix, name))


def squash(text: str) -> str:
    return " ".join(text.split())


def test_there_are_commands_to_check() -> None:
    assert {"check", "status"} <= set(cli.commands)


@pytest.mark.parametrize(("words", "command"), [
    pytest.param(words, command, id=" ".join(words)) for words, command in iter_commands(cli)])
def test_help_for_every_command(capsys: pytest.CaptureFixture[str], words: tuple[str, ...],
                                command: click.Command) -> None:
    assert command.help, f"magsync {' '.join(words)} has no docstring"
    first_line = command.help.strip().splitlines()[0]
    for flag in ("--help", "-h"):
        code, out, err = cli_run(capsys, *words, flag)
        assert code == 0, err
        assert out.startswith(f"Usage: magsync {' '.join(words)}")
        assert squash(first_line) in squash(out)


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli_run(capsys, "--help")
    assert code == 0
    assert "Keep Magento 2 customers and newsletter subscribers in sync" in out
    for name in cli.commands:
        assert f"  {name} " in out or f"  {name}\n" in out
    for option in ("--config", "--verbose", "--quiet", "--log-json", "--debug", "--lock-wait"):
        assert option in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli_run(capsys, "--version")
    assert code == 0 and out.strip() == f"magsync, version {__version__}"


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-command"], "No such command 'no-such-command'"),
    (["--no-such-option", "status"], "No such option '--no-such-option'"),
    (["--lock-wait", "-1", "status"], "Invalid value for '--lock-wait'"),
    (["status", "--jsn"], "No such option '--jsn'. Did you mean '--json'?"),
])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                             message: str) -> None:
    code, out, err = cli_run(capsys, *args)
    assert (code, out) == (EXIT_CONFIG, "")
    assert message in err and "Traceback" not in err


def test_click_errors_other_than_usage_are_exit_2_too() -> None:
    # a plain ClickException has exit code 1, which would mean "some contacts failed"
    code = "import click\nfrom magsync.cli import cli, main\n" \
           "@cli.command()\ndef refuse():\n" \
           "    raise click.ClickException('cannot do that here')\nmain()\n"
    proc = subprocess.run([sys.executable, "-c", code, "refuse"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == EXIT_CONFIG
    assert proc.stderr == "Error: cannot do that here\n"


# -- status ----------------------------------------------------------------------------------


def test_status_without_a_state_file(capsys: pytest.CaptureFixture[str], config: Path,
                                     tmp_path: Path) -> None:
    code, out, err = cli_run(capsys, "--config", str(config), "status")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"state file: {tmp_path / 'state.db'} (not created yet: no run so far)",
        "last runs: none", "watermarks: none", "export-initial completed: none yet",
        "failsafe queue: 0 queued, 0 dead",
        "contacts known: 0"]
    code, out, _ = cli_run(capsys, "--config", str(config), "status", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["state_exists"] is False and data["runs"] == {}
    assert data["queue"] == {"queued": 0, "dead": 0} and data["contacts"] == 0
    assert not (tmp_path / "state.db").exists()  # status does not create it


def test_status_on_a_migrated_empty_state(capsys: pytest.CaptureFixture[str], config: Path,
                                          tmp_path: Path) -> None:
    StateStore.open(tmp_path / "state.db").close()
    code, out, _ = cli_run(capsys, "--config", str(config), "status", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["state_exists"] is True and data["schema_version"] == SCHEMA_VERSION
    assert data["runs"] == {} and data["watermarks"] == {} and data["issues"] == []


def populate(path: Path) -> None:
    with StateStore.open(path) as store:
        run_id = store.start_run("sync-realtime", started_at=T0)
        store.finish_run(run_id, outcome="partial", exit_code=1,
                         counts={"sent": 5, "failed": 1})
        store.start_run("export-initial", started_at=T0)  # never finished: killed
        store.set_watermark("customers", T0)
        store.enqueue("c:1", "a@example.com", "invalid email", max_attempts=1)
        store.enqueue("c:2", "b@example.com", "invalid phone", max_attempts=5)
        store.save_contacts([ContactRecord("c:1", customer_id=1), ContactRecord("s:3")])
        store.replace_mirror([MirrorRow(3, 0, "g@example.com", 1)], seen_at=T0)
        store.set_meta("mapping_hash", "h-123")
        store.add_reports(run_id, [("consent conflict", "c:2", "opt-in differs")])


def test_status_on_populated_state(capsys: pytest.CaptureFixture[str], config: Path,
                                   tmp_path: Path) -> None:
    populate(tmp_path / "state.db")
    code, out, err = cli_run(capsys, "--config", str(config), "status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"state file: {tmp_path / 'state.db'}"
    assert lines[1] == "bound to: no accounts yet (the next writing run records them)"
    assert lines[2] == "last runs:"
    assert lines[3].split() == ["command", "started", "ended", "outcome", "exit", "counts"]
    # no end and nobody holds the lock: the run's process died
    assert lines[4].split()[:4] == ["export-initial", "2024-05-01T10:30:00.000000Z", "-",
                                    "killed"]
    assert lines[5].split()[0] == "sync-realtime"
    assert lines[5].split()[3:] == ["partial", "1", "sent", "5,", "failed", "1"]
    assert "watermarks: customers 2024-05-01T10:30:00.000000Z" in lines
    assert "failsafe queue: 1 queued, 1 dead" in lines
    assert "contacts known: 2" in lines
    assert any(line.startswith("subscriber mirror: 1 rows, read 2024-05-01T10:30:00")
               for line in lines)
    assert lines[-2] == "recent issues:"
    assert lines[-1].endswith("consent conflict c:2: opt-in differs")


def test_status_json_on_populated_state(capsys: pytest.CaptureFixture[str], config: Path,
                                        tmp_path: Path) -> None:
    populate(tmp_path / "state.db")
    code, out, _ = cli_run(capsys, "-q", "--config", str(config), "status", "--json")
    assert code == 0  # --json prints even under -q: it was asked for
    data = json.loads(out)
    assert data["state_path"] == str(tmp_path / "state.db")
    assert data["runs"]["sync-realtime"] == {
        "started_at": "2024-05-01T10:30:00.000000Z", "ended_at": data["runs"]["sync-realtime"]
        ["ended_at"], "outcome": "partial", "exit_code": 1,
        "counts": {"sent": 5, "failed": 1}, "message": None}
    assert data["runs"]["export-initial"]["outcome"] == "killed"
    assert data["runs"]["export-initial"]["ended_at"] is None
    assert data["watermarks"] == {"customers": "2024-05-01T10:30:00.000000Z"}
    assert data["queue"] == {"queued": 1, "dead": 1}
    assert data["contacts"] == 2 and data["mapping_hash"] == "h-123"
    assert data["mirror"]["subscribers"] == 1
    assert data["mirror"]["read_at"] == "2024-05-01T10:30:00.000000Z"
    assert data["mirror"]["age_minutes"] > 0
    assert [(i["kind"], i["key"]) for i in data["issues"]] == [("consent conflict", "c:2")]


def test_quiet_status_still_prints_the_status(capsys: pytest.CaptureFixture[str],
                                              config: Path, tmp_path: Path) -> None:
    # -q silences the chatter of cron runs, not what a command exists to print
    populate(tmp_path / "state.db")
    loud = cli_run(capsys, "--config", str(config), "status")
    quiet = cli_run(capsys, "-q", "--config", str(config), "status")
    assert quiet[0] == 0 and quiet[2] == ""
    assert "failsafe queue: 1 queued, 1 dead" in quiet[1]
    assert quiet[1].splitlines()[:3] == loud[1].splitlines()[:3]


# -- bad state files through the CLI ---------------------------------------------------------


def test_state_file_not_sqlite(capsys: pytest.CaptureFixture[str], config: Path,
                               tmp_path: Path, pair: SandboxPair) -> None:
    (tmp_path / "state.db").write_text("not a database\n" * 50)
    code, out, err = cli_run(capsys, "--config", str(config), "status")
    assert (code, out) == (EXIT_CONFIG, "")
    assert err == (f"magsync: error: {tmp_path / 'state.db'} is not a magsync state file "
                   "(file is not a database) (hint: point state.path (or $MAGSYNC_STATE) "
                   "at another file, or move this one away)\n")
    # check reaches the sandbox pair, so the state file is the one failure
    paired = pair.write_config(tmp_path / "pair.yaml", tmp_path / "state.db")
    code, out, err = cli_run(capsys, "--config", str(paired), "check")
    assert code == EXIT_CONFIG
    assert "OK   Emarsys credentials" in out
    assert f"FAIL state file — {tmp_path / 'state.db'} is not a magsync state file" in out
    assert err == "magsync: 1 check failed\n"


def test_state_file_from_a_newer_magsync(capsys: pytest.CaptureFixture[str], config: Path,
                                         tmp_path: Path) -> None:
    import sqlite3

    from magsync.state.integrity import APPLICATION_ID

    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    code, out, err = cli_run(capsys, "--config", str(config), "status", "--json")
    assert (code, out) == (EXIT_CONFIG, "")
    assert err.startswith(f"magsync: error: {tmp_path / 'state.db'} was written by a newer "
                          "magsync (schema 999")
    assert "hint: upgrade magsync, or use another state.path" in err
    assert err.count("\n") == 1 and "Traceback" not in err


# -- --debug and the error boundary ----------------------------------------------------------


def test_debug_shows_the_traceback_only_when_asked(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("magento: [\n")
    code, _, err = cli_run(capsys, "--config", str(bad), "status")
    assert code == EXIT_CONFIG
    assert "Traceback" not in err
    assert err.startswith("magsync: error: ") and "invalid YAML at line 2" in err
    code, _, err = cli_run(capsys, "--debug", "--config", str(bad), "status")
    assert code == EXIT_CONFIG
    assert err.startswith("Traceback (most recent call last):")
    assert "magsync.errors.ConfigError" in err
    assert err.rstrip().splitlines()[-2].startswith("magsync: error: ")


def test_main_in_a_real_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("magento: [\n")
    for debug in ([], ["--debug"]):
        code, out, err = finish(spawn(*debug, "--config", str(bad), "check"))
        assert code == EXIT_CONFIG
        assert "invalid YAML at line 2" in out
        assert "Traceback" not in err  # check reports config problems as FAIL lines
    code, _, err = finish(spawn("--debug", "--config", str(bad), "status"))
    assert code == EXIT_CONFIG and "Traceback (most recent call last)" in err


def test_a_bug_is_exit_70_with_traceback_only_under_debug() -> None:
    code, out, err = finish(spawn("crash"))
    assert code == 70 and out == ""
    assert err == ("magsync: internal error: RuntimeError('an unexpected bug') (run with "
                   "--debug for the traceback)\n")
    code, _, err = finish(spawn("--debug", "crash"))
    assert code == 70
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: an unexpected bug" in err


# -- the lock through the CLI ----------------------------------------------------------------


@pytest.fixture
def cli_holder(config: Path) -> Iterator[subprocess.Popen[str]]:
    """A real `magsync hold-lock` run holding the lock on the config's state file."""
    proc = spawn("--config", str(config), "hold-lock")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "locked", proc.stderr.read() if proc.stderr else ""
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_second_run_is_refused_with_exit_75(config: Path, tmp_path: Path,
                                            cli_holder: subprocess.Popen[str]) -> None:
    code, out, err = finish(spawn("--config", str(config), "hold-lock"))
    assert (code, out) == (EXIT_LOCKED, "")
    assert err.count("\n") == 1  # one line naming the holder
    assert err.startswith(f"magsync: another magsync run holds the lock on "
                          f"{tmp_path / 'state.db'}: pid {cli_holder.pid} (hold-lock)")
    # silent under -q (cron mails only when something is wrong)
    assert finish(spawn("-q", "--config", str(config), "hold-lock")) == (EXIT_LOCKED, "", "")
    with StateStore.open(tmp_path / "state.db") as store:
        assert len(store.recent_runs()) == 1  # the refused runs did nothing


def test_lock_wait_succeeds_once_the_holder_ends(config: Path, tmp_path: Path,
                                                 cli_holder: subprocess.Popen[str]) -> None:
    waiter = spawn("--lock-wait", "30", "--config", str(config), "hold-lock")
    time.sleep(0.5)  # ordering only: give the waiter time to start waiting
    assert waiter.poll() is None  # it waits instead of giving up
    assert cli_holder.stdin is not None
    cli_holder.stdin.close()
    assert cli_holder.wait(timeout=10) == 0
    code, out, err = finish(waiter)
    assert code == 0, err
    assert out == "locked\n"
    with StateStore.open(tmp_path / "state.db") as store:
        assert len(store.recent_runs()) == 2


def test_killed_holder_does_not_block_the_next_run(config: Path,
                                                   cli_holder: subprocess.Popen[str]) -> None:
    cli_holder.send_signal(signal.SIGKILL)
    assert cli_holder.wait(timeout=10) == -signal.SIGKILL
    code, out, err = finish(spawn("--config", str(config), "hold-lock"))
    assert (code, out) == (0, "locked\n"), err
