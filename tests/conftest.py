"""Shared fixtures: sandbox servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.magento.server import MagentoSandbox
from magsync.sandbox.magento.shop_gen import generate_shop
from magsync.sandbox.pair import SandboxPair

MAGENTO_ANCHOR = datetime(2026, 5, 1, tzinfo=timezone.utc)


@pytest.fixture
def magento_sandbox() -> Iterator[MagentoSandbox]:
    """A running Magento simulator with a small seeded shop (60 customers, 40
    subscribers, timestamps before 2026-05-01); credentials as in ``server.config()``."""
    server = MagentoSandbox(generate_shop(60, 40, seed=7, anchor=MAGENTO_ANCHOR))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- end-to-end: both simulators, a config file, and the real CLI -------------------------



@pytest.fixture
def pair() -> Iterator[SandboxPair]:
    """Both simulators with a small seeded shop (120 customers, 80 subscribers)."""
    with SandboxPair(120, 80, seed=3) as p:
        yield p


@pytest.fixture
def config_file(pair: SandboxPair, tmp_path: Path) -> Path:
    """A config for ``pair`` with its state file in ``tmp_path``."""
    return pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db")


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def magsync(config_file: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the real CLI in-process: ``magsync("export-initial", "--dry-run")``."""
    from magsync.cli import run

    def call(*args: str, config: Path | None = None) -> CliResult:
        capsys.readouterr()
        code = run(["--config", str(config or config_file), *args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return call
