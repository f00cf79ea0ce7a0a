"""Shared fixtures: sandbox servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from magsync.sandbox.magento import MagentoSandbox
from magsync.sandbox.shop import generate_shop

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
