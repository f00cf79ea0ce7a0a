"""Running the real CLI in-process, and reading what it reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class CliResult:
    """Exit code and captured output of one CLI run."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


class CliRunner:
    """``runner("export-initial", config=path)`` -> CliResult; ``config`` defaults to
    what ``default_config()`` gives (a config for the ``pair`` fixture)."""

    def __init__(self, capsys: pytest.CaptureFixture[str],
                 default_config: Callable[[], Path]) -> None:
        self.capsys = capsys
        self.default_config = default_config

    def __call__(self, *args: str, config: Path | None = None) -> CliResult:
        from magsync.cli import run

        self.capsys.readouterr()
        code = run(["--config", str(config or self.default_config()), *args])
        captured = self.capsys.readouterr()
        return CliResult(code, captured.out, captured.err)


def status_of(magsync: Any, config: Path | None = None) -> dict[str, Any]:
    """``magsync status --json`` as a dict (it must exit 0)."""
    result = magsync("status", "--json", config=config)
    assert result.code == 0, result
    return dict(json.loads(result.out))
