"""What the pull-optin tests share: quick export polls, the exported start, the counts."""

from __future__ import annotations

from typing import Any

import pytest

from magsync.sandbox.pair import SandboxPair
from magsync.sync.pull import EXPORT_POLL_ENV


def fast_pulls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll the sandbox's exports without pausing (the sandbox counts polls, not time)
    and give up on a failing request within 2 s."""
    monkeypatch.setenv(EXPORT_POLL_ENV, "0")
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "2")


def counts_of(result: Any) -> dict[str, int]:
    """The counts of the plain summary line ``pull-optin: read 5, applied 2 (0.1 s)``."""
    line = next(ln for ln in result.out.splitlines() if ln.startswith("pull-optin"))
    body = line.split(": ", 1)[1].rsplit(" (", 1)[0]
    return {k: int(v) for k, v in (part.rsplit(" ", 1) for part in body.split(", "))}


def export_and_pull(pair: SandboxPair, magsync: Any) -> SandboxPair:
    """The pair after a complete ``export-initial`` and a first pull-optin that finds
    only magsync's own writes; request logs cleared."""
    assert magsync("export-initial").code == 0
    result = magsync("pull-optin")
    assert result.code == 0, result
    assert "applied" not in counts_of(result)
    pair.magento.clear_log()
    pair.emarsys.clear_log()
    return pair
