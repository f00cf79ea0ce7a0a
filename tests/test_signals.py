"""SIGTERM (what systemd and ``timeout`` send) and SIGINT stop a run at the next safe
point: what finished is committed, the run is recorded as interrupted, the exit code is
143 (SIGTERM) or 130 (SIGINT), and the next run continues from there.

``magsync export-initial`` runs in a subprocess (``python -m magsync``) against sandboxes
that keep running in the test process; a sandbox hook sends the signal right after Emarsys
applied the Nth upsert, before magsync hears the reply.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.base import Request, Response
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from tests.helpers.export_checks import assert_export_complete, upserted_keys

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def big_pair() -> Iterator[SandboxPair]:
    with SandboxPair(300, 150, seed=9) as p:
        yield p


@pytest.fixture
def cfg(big_pair: SandboxPair, tmp_path: Path) -> Path:
    return big_pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db",
                                 magento={"page_size": 50, "concurrency": 2},
                                 emarsys={"batch_size": 25, "concurrency": 3})


def run_signalled(pair: SandboxPair, cfg: Path, signum: int, after_upserts: int
                  ) -> subprocess.CompletedProcess[str]:
    """Run export-initial in a subprocess; send ``signum`` once Emarsys has applied
    ``after_upserts`` upserts (from inside the sandbox, before the reply leaves)."""
    server = pair.emarsys
    original = server.after_route
    state: dict[str, Any] = {"seen": 0, "sent": False, "proc": None}

    def after(req: Request, resp: Response) -> None:
        original(req, resp)
        if state["sent"] or req.method != "PUT" or not re.search(r"/contact/?$", req.path) \
                or resp.status != 200:
            return
        state["seen"] += 1
        if state["seen"] >= after_upserts and state["proc"] is not None:
            state["sent"] = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["proc"].pid, signum)

    server.after_route = after  # type: ignore[method-assign]
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "magsync", "--config", str(cfg), "export-initial"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # a runner that ignores SIGINT (a background job) must not pass that on:
            # Python installs its Ctrl-C handler only where SIGINT is not ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        state["proc"] = proc
        out, err = proc.communicate(timeout=60)
    finally:
        server.after_route = original  # type: ignore[method-assign]
    assert state["sent"], f"the export ended before upsert #{after_upserts}: {err[-500:]}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("signum", "code", "said"), [
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    (signal.SIGINT, 130, "interrupted"),
])
def test_a_signal_stops_the_export_gracefully_and_the_next_run_resumes(
        big_pair: SandboxPair, cfg: Path, tmp_path: Path, magsync: Any, signum: int,
        code: int, said: str) -> None:
    result = run_signalled(big_pair, cfg, signum, after_upserts=4)

    assert result.returncode == code, result.stderr
    assert f"magsync: {said}; the next run continues where this one stopped" in result.stderr
    assert "Traceback" not in result.stderr
    with StateStore.open(tmp_path / "state.db") as store:
        run = store.last_runs()["export-initial"]
        committed = store.count_contacts()
        assert (run.outcome, run.exit_code) == ("interrupted", code)
        assert run.ended_at is not None  # recorded, not left "running or killed"
        assert store.get_checkpoint("export-initial") is not None
        assert store.watermarks() == {}
    # the upserts Emarsys applied are committed, the one in flight included
    assert committed >= 4 * 25
    sent_before = len(upserted_keys(big_pair))
    assert committed == sent_before

    resumed = magsync("export-initial", config=cfg)

    assert resumed.code == 0, resumed
    assert "resumed the export" in resumed.out
    ids = assert_export_complete(big_pair)
    again = upserted_keys(big_pair)[sent_before:]
    assert len(again) == len(set(again)) == len(ids) - committed  # nothing sent twice


def test_an_interrupt_while_a_job_is_committed_waits_for_the_commit(
        big_pair: SandboxPair, cfg: Path, tmp_path: Path, magsync: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing in the middle of committing a job that Emarsys applied: the commit
    finishes first (rolled back, the next run would send those contacts again)."""
    from magsync.state.contacts import ContactTables

    real = ContactTables.save_contacts
    fired: list[int] = []

    def save_then_interrupted(self: ContactTables, records: Any) -> None:
        records = list(records)
        if not fired:
            fired.append(len(records))
            os.kill(os.getpid(), signal.SIGINT)  # arrives inside the transaction
        real(self, records)

    monkeypatch.setattr(ContactTables, "save_contacts", save_then_interrupted)
    result = magsync("export-initial", config=cfg)
    assert result.code == 130, result
    assert fired
    with StateStore.open(tmp_path / "state.db") as store:
        committed = store.count_contacts()
    assert committed >= fired[0]
    assert committed == len(upserted_keys(big_pair))  # every contact Emarsys applied

    monkeypatch.setattr(ContactTables, "save_contacts", real)
    resumed = magsync("export-initial", config=cfg)
    assert resumed.code == 0, resumed
    ids = assert_export_complete(big_pair)
    again = upserted_keys(big_pair)[committed:]
    assert len(again) == len(set(again)) == len(ids) - committed  # nothing sent twice
