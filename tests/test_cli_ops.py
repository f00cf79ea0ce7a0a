"""Daily operation through the CLI: exit codes in ``--help``, ``check --json``, ``queue``
as a command group (``list|retry|purge`` each with its own help, ``queue`` alone lists,
``list --json``), and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from magsync.sandbox.pair import SandboxPair
from tests.helpers.export_checks import CUSTOMER_KEY
from tests.helpers.sandbox import clock_behind

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_the_exit_codes(magsync: Any) -> None:
    out = magsync("--help").out
    for line in ("Exit codes:", "0    all done", "1    finished, but some contacts failed",
                 "2    usage, configuration or safety stop", "3    a remote system was",
                 "70   internal error", "75   another magsync run holds the lock",
                 "130  interrupted (Ctrl-C); 143: terminated (SIGTERM)"):
        assert line in out


def test_queue_subcommands_each_have_their_own_help(magsync: Any) -> None:
    helps = {sub: magsync("queue", sub, "--help").out for sub in ("list", "retry", "purge")}
    assert helps["list"].startswith("Usage: magsync queue list [OPTIONS]")
    assert "--json" in helps["list"] and "--yes" not in helps["list"]
    assert "Drain the queue now" in helps["retry"] and "--json" not in helps["retry"]
    assert "--yes" in helps["purge"] and "Empty the queue" in helps["purge"]
    group = magsync("queue", "--help").out
    for sub in ("list", "retry", "purge"):
        assert f"  {sub} " in group


def test_queue_alone_lists_and_list_has_json(magsync: Any, pair: SandboxPair) -> None:
    assert magsync("export-initial").code == 0
    shop = pair.magento.shop
    clock_behind(shop)
    cid = min(shop.customers)
    pair.emarsys.inject_contact_error(int(CUSTOMER_KEY), cid, 2010, "More than one contact")
    shop.edit_customer(cid, firstname="Rejected")
    assert magsync("sync-realtime").code == 1

    assert magsync("queue").out == magsync("queue", "list").out
    assert magsync("queue", "--dead").out == magsync("queue", "list", "--dead").out \
        == "no dead contacts\n"
    data = json.loads(magsync("queue", "list", "--json").out)
    [contact] = data["contacts"]
    assert data["dead"] is False
    assert contact["key"] == f"c:{cid}" and contact["attempts"] == 1
    assert contact["email"] == shop.customers[cid]["email"]
    assert "More than one contact" in contact["last_error"]
    assert contact["queued_since"].endswith("Z")
    assert json.loads(magsync("queue", "--json", "--dead").out) == {"dead": True,
                                                                     "contacts": []}
    wrong = magsync("queue", "--dead", "purge", "--yes")  # would purge everything
    assert wrong.code == 2 and "--dead and --json go after the subcommand" in wrong.err
    assert len(json.loads(magsync("queue", "list", "--json").out)["contacts"]) == 1


def test_check_json(magsync: Any, pair: SandboxPair, tmp_path: Path) -> None:
    ok = magsync("check", "--json")
    assert ok.code == 0, ok
    data = json.loads(ok.out)
    assert data["ok"] is True and data["exit_code"] == 0
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["Emarsys credentials"] == "ok"
    assert statuses["configuration"] == "warn"  # requests_per_minute above Emarsys's limit

    bad = pair.write_config(tmp_path / "bad.yaml", tmp_path / "state.db",
                            emarsys={"auth": {"secret": "wrong"}})
    r = magsync("-q", "check", "--json", config=bad)
    assert r.code == 3
    data = json.loads(r.out)  # -q does not hide the JSON
    assert data["ok"] is False and data["exit_code"] == 3
    [failed] = [c for c in data["checks"] if c["status"] == "fail"]
    assert failed["name"] == "Emarsys credentials" and failed["exit_code"] == 3
    assert "wrong" not in r.out


def test_shell_completion(tmp_path: Path) -> None:
    env = {**os.environ, "_MAGSYNC_COMPLETE": "bash_source"}
    script = subprocess.run([sys.executable, "-m", "magsync"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert script.returncode == 0 and "_magsync_completion()" in script.stdout
    env.update({"_MAGSYNC_COMPLETE": "bash_complete", "COMP_WORDS": "magsync que",
                "COMP_CWORD": "1"})
    words = subprocess.run([sys.executable, "-m", "magsync"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=30)
    assert words.stdout.split() == ["plain,queue"]
