"""The in-process CLI for any config file (the shared ``magsync`` fixture is bound to the
``pair`` fixture's config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class CliRun:
    """Exit code and captured output of one CLI run."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliRun(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def magsync_cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """``magsync_cli("export-initial", config=path)`` -> CliRun."""
    from magsync.cli import run

    def call(*args: str, config: Path) -> CliRun:
        capsys.readouterr()
        code = run(["--config", str(config), *args])
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return call
