"""One finding of ``magsync check``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    """A named check, whether it passed, and what was found (or how to fix it)."""

    name: str
    ok: bool
    detail: str = ""
