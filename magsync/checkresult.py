"""The outcome of one ``magsync check`` probe, shared by the Magento and Emarsys checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    """One line of ``magsync check``: what was checked, whether it passed, and why."""

    name: str
    ok: bool
    detail: str
    # What a failure means for `magsync check`'s exit code: 2 a configuration or setup
    # problem, 3 a remote system unreachable or refusing the credentials (SPEC exit codes).
    exit_code: int = 2
