"""`magsync demo` end to end, and `magsync crontab` for both modes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from magsync.sandbox.pair import SandboxPair


def test_demo_exits_0_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "magsync", "demo"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for step in ("$ magsync check", "$ magsync export-initial", "$ magsync sync-realtime",
                 "$ magsync pull-optin", "$ magsync sync-background", "$ magsync status"):
        assert step in out
    assert "adopted, not duplicated" in out
    assert "The demo did not go as described" not in out
    assert "Done." in out
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone


def test_demo_in_process_stops_its_servers(capsys: object) -> None:
    from magsync.cli import run
    from magsync.ops.demo import run_demo

    before = set(threading.enumerate())
    lines: list[str] = []
    assert run_demo(lines.append, run) == 0
    text = "\n".join(lines)
    assert "registered as customer" in text and "opts out" in text
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == []


def _config(tmp_path: Path, pair: SandboxPair, **sync: object) -> Path:
    return pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db",
                             sync={"background_runtime": "04:05", **sync})


def test_crontab_realtime_failsafe(tmp_path: Path, pair: SandboxPair, magsync: object) -> None:
    config = _config(tmp_path, pair)
    r = magsync("crontab", config=config)  # type: ignore[operator]
    assert r.code == 0
    lines = [ln for ln in r.out.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 2
    realtime, daily = lines
    conf = str(config.resolve())
    assert realtime.startswith("* * * * * ")
    assert realtime.endswith(f"--config {conf} -q sync-realtime")
    assert "--lock-wait" not in realtime
    assert daily.startswith("5 4 * * * ")
    first, second = daily[len("5 4 * * * "):].split("; ")
    assert first.endswith(f"--config {conf} -q --lock-wait 900 pull-optin")
    assert second.endswith(f"--config {conf} -q --lock-wait 900 sync-background")
    assert Path(first.split(" ")[0]).is_absolute()


def test_crontab_background_only(tmp_path: Path, pair: SandboxPair, magsync: object) -> None:
    config = _config(tmp_path, pair, mode="background-only")
    r = magsync("crontab", config=config)  # type: ignore[operator]
    assert r.code == 0
    lines = [ln for ln in r.out.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1
    assert lines[0].startswith("5 4 * * * ") and "sync-realtime" not in r.out.replace(
        "# ", "")
    assert lines[0].count("--lock-wait 900") == 2


def test_example_crontab_matches_the_command(tmp_path: Path, pair: SandboxPair,
                                             magsync: object) -> None:
    """examples/crontab shows what `magsync crontab` prints for examples/magsync.yaml."""
    example = (Path(__file__).parent.parent / "examples" / "crontab").read_text()
    config = _config(tmp_path, pair, background_runtime="02:30")
    r = magsync("crontab", config=config)  # type: ignore[operator]
    assert r.code == 0, r
    conf = str(config.resolve())
    lines = [ln for ln in r.out.splitlines() if not ln.startswith("#")]
    assert len(lines) == 2, r.out  # realtime every minute, the daily pair
    for line in lines:
        # the executable is what stands between the five schedule fields and --config:
        # `magsync` on PATH, else `python -m magsync`
        exe = line.split(" --config ")[0].split(" ", 5)[5]
        normalised = line.replace(exe, "/usr/local/bin/magsync").replace(
            conf, "/etc/magsync/magsync.yaml")
        assert normalised in example, (normalised, example)
