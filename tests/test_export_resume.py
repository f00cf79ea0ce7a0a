"""``magsync export-initial`` killed with SIGKILL at seeded points, then resumed.

The export runs in a subprocess (``python -m magsync``) against sandboxes that keep
running in the test process. A sandbox hook kills the subprocess at an exact point (right
after Emarsys applied its Nth upsert but before magsync hears the reply, after a list
call, after a Magento page...). The resumed run must leave one contact per key and per
email, lose nothing, fill both lists, and send far less than a ``--restart``.
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

from magsync.sandbox.base import Request, Response, SandboxServer
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from tests.helpers.export_checks import assert_export_complete, upserted_keys

ROOT = Path(__file__).resolve().parent.parent
UPSERT = ("PUT", r"/contact/?$")
LIST_ADD = ("POST", r"/contactlist/\d+/add")
GETDATA = ("POST", r"/contact/getdata")
CUSTOMER_PAGE = ("GET", r"/customers/search")


@pytest.fixture
def big_pair() -> Iterator[SandboxPair]:
    """A shop large enough for many batches: 400 customers, 200 subscribers."""
    with SandboxPair(400, 200, seed=5) as p:
        yield p


@pytest.fixture
def cfg(big_pair: SandboxPair, tmp_path: Path) -> Path:
    return big_pair.write_config(
        tmp_path / "magsync.yaml", tmp_path / "state.db",
        magento={"page_size": 50, "concurrency": 2},
        emarsys={"batch_size": 25, "concurrency": 3})


class Killer:
    """Kills ``proc`` from inside the sandbox once the ``n``-th matching request has been
    handled, before its reply leaves (so the client never learns the outcome)."""

    def __init__(self, server: SandboxServer, method: str, path_re: str, n: int) -> None:
        self.server, self.method, self.pattern, self.n = server, method, re.compile(path_re), n
        self.seen = 0
        self.fired = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._original = server.after_route
        server.after_route = self._after  # type: ignore[method-assign]

    def _after(self, req: Request, resp: Response) -> None:
        self._original(req, resp)
        if self.fired or req.method != self.method or not self.pattern.search(req.path) \
                or resp.status != 200:
            return
        self.seen += 1
        if self.seen >= self.n and self.proc is not None:
            self.fired = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    def remove(self) -> None:
        self.server.after_route = self._original  # type: ignore[method-assign]


def run_killed(server: SandboxServer, point: tuple[str, str], n: int, cfg: Path,
               *args: str) -> int:
    """Run export-initial in a subprocess, kill it at ``point`` #``n``; its return code."""
    killer = Killer(server, point[0], point[1], n)
    try:
        killer.proc = subprocess.Popen(
            [sys.executable, "-m", "magsync", "-q", "--config", str(cfg), "export-initial",
             *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = killer.proc.communicate(timeout=60)
    finally:
        killer.remove()
    assert killer.fired, f"the run ended before {point} #{n}: {err.decode()[-500:]}"
    return killer.proc.returncode


def _run_to_the_end(magsync: Any, cfg: Path) -> Any:
    result = magsync("export-initial", config=cfg)
    assert result.code == 0, result
    return result


@pytest.mark.parametrize(("server", "point", "n"), [
    ("emarsys", UPSERT, 1),      # the very first upsert applied, its reply never read
    ("emarsys", UPSERT, 6),      # several batches in flight
    ("emarsys", LIST_ADD, 1),    # between the list calls at the end and their commit
    ("emarsys", GETDATA, 4),     # while reading Emarsys before a first send
    ("magento", CUSTOMER_PAGE, 5),  # while reading customers
])
def test_killed_export_resumes_without_loss_or_duplicates(
        big_pair: SandboxPair, cfg: Path, tmp_path: Path, magsync: Any,
        server: str, point: tuple[str, str], n: int) -> None:
    target = big_pair.emarsys if server == "emarsys" else big_pair.magento

    code = run_killed(target, point, n, cfg)

    assert code == -signal.SIGKILL
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.watermarks() == {}  # an unfinished export moves no watermark
        committed = store.count_contacts()
    before = len(upserted_keys(big_pair))
    result = magsync("export-initial", config=cfg)
    assert result.code == 0, result
    ids = assert_export_complete(big_pair)
    assert len(big_pair.emarsys.account.contacts) == len(ids)
    # what was committed is not sent again; everything else is, once
    resumed = upserted_keys(big_pair)[before:]
    assert len(resumed) == len(set(resumed)) == len(ids) - committed
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.watermarks() and store.get_checkpoint("export-initial") is None
        assert store.count_contacts() == len(ids)


def test_killed_again_and_again_then_resumed_sends_far_less_than_a_restart(
        big_pair: SandboxPair, cfg: Path, tmp_path: Path, magsync: Any) -> None:
    em = big_pair.emarsys
    committed = [0]
    for point, n in ((UPSERT, 8), (UPSERT, 8), (LIST_ADD, 1)):
        assert run_killed(em, point, n, cfg) == -signal.SIGKILL
        with StateStore.open(tmp_path / "state.db") as store:
            committed.append(store.count_contacts())
    assert committed == sorted(set(committed)), committed  # each killed run got further

    start = len(upserted_keys(big_pair))
    result = _run_to_the_end(magsync, cfg)
    resumed = len(upserted_keys(big_pair)) - start

    assert "resumed" in result.out
    ids = assert_export_complete(big_pair)
    assert len(em.account.contacts) == len(ids)
    start = len(upserted_keys(big_pair))
    _run_to_the_end(magsync, cfg)
    assert len(upserted_keys(big_pair)) == start  # completed: nothing left to send
    restart = magsync("export-initial", "--restart", config=cfg)
    assert restart.code == 0, restart
    restarted = len(upserted_keys(big_pair)) - start
    assert restarted == len(ids)
    assert resumed <= restarted // 2
    assert_export_complete(big_pair)
