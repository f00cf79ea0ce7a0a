"""An outage stops the run within one retry budget and keeps what it sent (SPEC 1
"Output and exit codes", SPEC 3 lists): end to end through the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.base import Request, Response
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from tests.helpers.export_checks import assert_export_complete, upserted_keys

LIST_ADD = r"/contactlist/\d+/add$"


@pytest.fixture
def pair() -> Iterator[SandboxPair]:
    with SandboxPair(80, 40, seed=13) as p:
        yield p


def _list_adds_fail(pair: SandboxPair) -> Any:
    """Emarsys answers every list add with a 500 (upserts still work); returns the
    original hook, to end the outage."""
    before = pair.emarsys.before_route

    def broken(req: Request) -> Response | None:
        if req.method == "POST" and req.path.endswith("/add"):
            return Response.json({"replyCode": 10001, "replyText": "Internal error",
                                  "data": ""}, 500)
        return before(req)

    pair.emarsys.before_route = broken  # type: ignore[method-assign]
    return before


def test_upserts_whose_list_calls_failed_are_kept_and_only_the_list_call_is_sent_again(
        pair: SandboxPair, magsync: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0.5")
    config = pair.write_config(tmp_path / "outage.yaml", tmp_path / "state.db",
                               emarsys={"batch_size": 20, "concurrency": 2})
    restore = _list_adds_fail(pair)

    down = magsync("export-initial", config=config)

    assert down.code == 3, down
    assert down.err.startswith("magsync: error: Emarsys did not answer successfully")
    first = set(upserted_keys(pair))
    assert first  # some batches went through before the list calls gave up
    with StateStore.open(tmp_path / "state.db") as store:
        records = store.get_contacts(first)
        assert set(records) == first  # every upsert Emarsys took is recorded
        # A contact joins one list with its upsert (contact_list_id); a customer with a
        # subscriber row joins the subscribers list by a list call, which failed.
        owed = [r for r in records.values()
                if r.key.startswith("c:") and r.subscriber_id is not None]
        assert owed and all("subscribers" not in r.lists for r in owed)
        assert store.queue_items(dead=None) == []  # an outage never fills the queue
    pair.emarsys.before_route = restore  # type: ignore[method-assign]
    pair.emarsys.clear_log()

    back = magsync("export-initial", config=config)

    assert back.code == 0, back
    assert not set(upserted_keys(pair)) & first  # their fields were not sent again
    assert pair.emarsys.requests("POST", LIST_ADD)  # only their list calls
    assert_export_complete(pair)
