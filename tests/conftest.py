"""Shared fixtures: sandbox servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from magsync.sandbox.magento.server import MagentoSandbox
from magsync.sandbox.magento.shop_gen import generate_shop
from magsync.sandbox.pair import SandboxPair
from tests.helpers.cli import CliRunner
from tests.helpers.mariadb import MariaDB, mariadb_session

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


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """One throwaway MariaDB server for the whole session (tests/helpers/mariadb.py), with
    Magento's subscriber tables; skips without a server binary, fails under ``CI=true``."""
    yield from mariadb_session()


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


@pytest.fixture
def magsync(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run the real CLI in-process: ``magsync("export-initial", "--dry-run")`` uses the
    ``pair`` fixture's config; ``magsync(..., config=path)`` any other."""
    return CliRunner(capsys, lambda: request.getfixturevalue("config_file"))
