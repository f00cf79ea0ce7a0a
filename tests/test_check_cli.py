"""`magsync check` through the CLI: every remote failure an admin can meet, with its exit
code (3: a system unreachable or refusing the credentials; 2: a setup problem)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from magsync.sandbox.pair import SandboxPair

RETRY_ENV = "MAGSYNC_RETRY_BUDGET"


def _config(pair: SandboxPair, tmp_path: Path, **sections: Any) -> Path:
    return pair.write_config(tmp_path / "check.yaml", tmp_path / "state.db", **sections)


def test_all_good(magsync: Any) -> None:
    r = magsync("check")
    assert r.code == 0, r
    assert "FAIL" not in r.out
    assert "OK   Emarsys customer id key field indexed" in r.out


def test_emarsys_refuses_the_credentials(magsync: Any, pair: SandboxPair,
                                         tmp_path: Path) -> None:
    config = _config(pair, tmp_path, emarsys={"auth": {"secret": "wrong-secret-value"}})
    r = magsync("check", config=config)
    assert r.code == 3, r
    assert "FAIL Emarsys credentials — Emarsys refused the credentials (auth method wsse)" \
        in r.out
    assert "wrong-secret-value" not in r.out + r.err
    assert r.err == "magsync: 1 check failed\n"


def test_emarsys_missing_permission(magsync: Any, pair: SandboxPair) -> None:
    pair.emarsys.fail_next_error(1, status=403, code=1, text="Forbidden")
    r = magsync("check")
    assert r.code == 3, r
    assert "lacks a permission" in r.out


def test_a_proxy_page_instead_of_emarsys(magsync: Any, pair: SandboxPair) -> None:
    pair.emarsys.faults.fail_next(1, 400, b"<html><body>Access denied by proxy</body></html>",
                                  "text/html")
    r = magsync("check")
    assert r.code == 3, r
    assert "not an Emarsys reply" in r.out and "HTTP 400" in r.out
    assert "Traceback" not in r.err


def test_key_field_not_indexed(magsync: Any, pair: SandboxPair) -> None:
    pair.emarsys.account.set_indexed("Magento Customer ID", False)
    r = magsync("check")
    assert r.code == 2, r
    line = next(ln for ln in r.out.splitlines() if "customer id key field indexed" in ln)
    assert line.startswith("FAIL") and "ask Emarsys support to index it" in line


def test_emarsys_down(magsync: Any, pair: SandboxPair, monkeypatch: Any) -> None:
    monkeypatch.setenv(RETRY_ENV, "0.2")
    pair.emarsys.faults.fail_next(1000, 503)
    r = magsync("check")
    assert r.code == 3, r
    assert "Emarsys did not answer successfully" in r.out


def test_magento_refuses_the_credentials(magsync: Any, pair: SandboxPair,
                                         tmp_path: Path) -> None:
    config = _config(pair, tmp_path, magento={"auth": {"consumer_secret": "not-the-one"}})
    r = magsync("check", config=config)
    assert r.code == 3, r
    assert "FAIL Magento credentials" in r.out and "Magento refused the credentials" in r.out
    assert "not-the-one" not in r.out + r.err


def test_magento_bearer_not_allowed_is_explained(magsync: Any, pair: SandboxPair,
                                                 tmp_path: Path) -> None:
    config = _config(pair, tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["magento"]["auth"] = {"method": "bearer", "token": pair.magento.access_token}
    config.write_text(yaml.safe_dump(raw))
    r = magsync("check", config=config)
    assert r.code == 3, r
    assert "enable_integration_as_bearer" in r.out or "Bearer" in r.out
    assert "oauth1" in r.out


def test_magento_in_maintenance(magsync: Any, pair: SandboxPair, monkeypatch: Any) -> None:
    monkeypatch.setenv(RETRY_ENV, "0.2")
    pair.magento.maintenance = True
    r = magsync("check")
    assert r.code == 3, r
    assert "Magento is in maintenance mode" in r.out


def test_emarsys_module_missing(magsync: Any, pair: SandboxPair) -> None:
    pair.magento.emarsys_module = False
    r = magsync("check")
    assert r.code == 2, r
    line = next(ln for ln in r.out.splitlines() if ln.startswith("FAIL"))
    assert "Emarsys" in line and "module" in line


def test_a_request_ceiling_above_emarsys_limit_is_a_warning(magsync: Any, pair: SandboxPair,
                                                          tmp_path: Path) -> None:
    high = _config(pair, tmp_path, emarsys={"requests_per_minute": 5000})
    r = magsync("check", config=high)
    assert r.code == 0, r
    assert "WARN configuration — emarsys.requests_per_minute 5000 is above" in r.out
    r = magsync("check")  # the fixture's own config sends 100000: also warned
    assert r.code == 0 and "WARN configuration — emarsys.requests_per_minute 100000 is above" \
        in r.out, r
    low = _config(pair, tmp_path, emarsys={"requests_per_minute": 600})
    assert "requests_per_minute" not in magsync("check", config=low).out
