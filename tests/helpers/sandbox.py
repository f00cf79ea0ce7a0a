"""Reading what the sandbox saw."""

from __future__ import annotations

from magsync.sandbox.pair import SandboxPair


def request_seq(pair: SandboxPair) -> int:
    """The Emarsys request sequence number so far (to find the requests after it)."""
    log = pair.emarsys.requests()
    return log[-1].seq if log else 0
