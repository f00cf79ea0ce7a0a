"""``magsync init [PATH]``: the commented example config, shipped as package data (pip does
not install ``examples/``), written 0600 and never over an existing file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from magsync.config import load_config
from magsync.ops.init import example_config

REPO = Path(__file__).resolve().parent.parent
ENV = {name: f"value-of-{name.lower()}" for name in (
    "MAGENTO_CONSUMER_KEY", "MAGENTO_CONSUMER_SECRET", "MAGENTO_ACCESS_TOKEN",
    "MAGENTO_ACCESS_TOKEN_SECRET", "EMARSYS_USERNAME", "EMARSYS_SECRET")}
ENV["HC_PING_REALTIME"] = "https://hc-ping.com/0f1e2d3c"


def test_the_package_copy_is_the_example_in_the_repository() -> None:
    assert example_config() == (REPO / "examples" / "magsync.yaml").read_text()


def test_init_writes_the_example_with_mode_600(magsync: Any, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    old = os.umask(0)  # whatever the umask
    try:
        r = magsync("init", config=tmp_path / "unused.yaml")
    finally:
        os.umask(old)
    written = tmp_path / "magsync.yaml"
    assert r.code == 0, r
    assert r.out.startswith(f"wrote {Path('magsync.yaml')} (mode 600)")
    assert written.read_text() == example_config()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    cfg = load_config(written, env=ENV)
    assert cfg.monitoring.ping_urls == ()


def test_init_never_overwrites(magsync: Any, tmp_path: Path) -> None:
    target = tmp_path / "shop.yaml"
    target.write_text("mine\n")
    r = magsync("init", str(target), config=tmp_path / "unused.yaml")
    assert r.code == 2
    assert r.err == f"magsync: error: {target} already exists; magsync init never overwrites " \
                    "a file (hint: pass another PATH, or move the existing file away)\n"
    assert target.read_text() == "mine\n"
    into_dir = magsync("init", str(tmp_path), config=tmp_path / "unused.yaml")
    assert into_dir.code == 0 and (tmp_path / "magsync.yaml").exists()


def test_the_commented_monitoring_section_is_valid_once_uncommented(tmp_path: Path) -> None:
    text = example_config()
    head, _, tail = text.partition("# monitoring:")
    section = "monitoring:" + "\n".join(
        line[2:] for line in tail.splitlines() if not line.lstrip("# ").startswith("#"))
    section = "\n".join(ln.split("  #")[0].rstrip() for ln in section.splitlines())
    path = tmp_path / "magsync.yaml"
    path.write_text(head + section + "\n")
    cfg = load_config(path, env=ENV)
    assert cfg.monitoring.textfile == Path("/var/lib/prometheus/node-exporter/magsync.prom")
    assert len(cfg.monitoring.ping_urls) == 3


def test_a_missing_config_points_to_magsync_init(magsync: Any, tmp_path: Path) -> None:
    r = magsync("sync-realtime", config=tmp_path / "nope.yaml")
    assert r.code == 2
    assert "`magsync init` writes a commented config with every key" in r.err
    assert "examples/" not in r.err
