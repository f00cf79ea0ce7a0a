"""Nothing leaks: a server that echoes the request's headers in a 400 (plain, JSON with
``\\/``, ``repr``, percent-encoded) must not get any credential, token, digest or nonce
onto stderr (plain, ``--log-json``, ``--debug``), into the state file or into
``status --json`` — for every auth method of both systems."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml

from magsync.sandbox.pair import SandboxPair
from tests.helpers.hostile import Hostile

MAGENTO_TOKEN = "mag-bearer-7Hq2/Zt+Lw9=xK"
OAUTH2_ID, OAUTH2_SECRET = "oauth2-client-4f1d", "oauth2-s3cret/with+chars="
RUNS = (["export-initial"], ["--log-json", "-vv", "export-initial"],
        ["--debug", "-v", "export-initial"], ["--log-json", "--debug", "check"],
        ["-v", "sync-realtime"])


@pytest.fixture
def echo() -> Iterator[Hostile]:
    with Hostile("echo") as server:
        yield server


def config_for(pair: SandboxPair, tmp_path: Path, scenario: str, echo: Hostile) -> Path:
    cfg = pair.config(tmp_path / "state.db")
    if scenario.startswith("emarsys"):
        cfg["emarsys"]["api_url"] = f"{echo.url}/api/v2"
    if scenario == "emarsys-oauth2":
        cfg["emarsys"]["auth"] = {"method": "oauth2", "client_id": OAUTH2_ID,
                                  "client_secret": OAUTH2_SECRET,
                                  "token_url": f"{echo.url}/oauth2/token"}
    if scenario.startswith("magento"):
        cfg["magento"]["base_url"] = echo.url
    if scenario == "magento-bearer":
        cfg["magento"]["auth"] = {"method": "bearer", "token": MAGENTO_TOKEN}
    if scenario == "emarsys-raw":
        echo.mode = "echo-raw"
    path = tmp_path / "echo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


def credentials(echo: Hostile, config: Path) -> set[str]:
    """Every credential the server received, its parts, the config's secrets and every
    token issued."""
    found: set[str] = set(echo.tokens)
    for _, _, headers in echo.received:
        for name, value in headers.items():
            if name.lower() not in ("authorization", "x-wsse"):
                continue
            found.add(value)
            found.update(re.findall(r'(?:PasswordDigest|Nonce|oauth_signature|oauth_nonce)'
                                    r'="([^"]+)"', value))
            scheme, _, rest = value.partition(" ")
            if scheme in ("Bearer", "Basic"):
                found.add(rest)
    cfg = yaml.safe_load(config.read_text())
    for section in ("magento", "emarsys"):
        for key, value in cfg[section]["auth"].items():
            if key not in ("method", "token_url"):
                found.add(str(value))
    return {f for f in found if len(f) >= 6}


def forms(value: str) -> set[str]:
    """The forms a value may show up in (as the echo server sends them, and more)."""
    dumped = json.dumps(value)[1:-1]
    out = {value, dumped, dumped.replace("/", "\\/"), repr(value)[1:-1]}
    for encoded in (quote(value, safe=""), quote_plus(value)):
        out |= {encoded, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded)}
    return {f for f in out if len(f) >= 6}


def state_bytes(tmp_path: Path) -> bytes:
    """The state file and its WAL/SHM companions, as stored on disk."""
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("state.db*")) if p.is_file())


@pytest.mark.parametrize("scenario", ["emarsys-wsse", "emarsys-raw", "emarsys-oauth2",
                                      "magento-oauth1", "magento-bearer"])
def test_echoed_credentials_never_reach_output_logs_or_state(
        scenario: str, magsync: Any, pair: SandboxPair, tmp_path: Path, echo: Hostile,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0")
    config = config_for(pair, tmp_path, scenario, echo)
    outputs: list[str] = []
    for args in RUNS:
        r = magsync(*args, config=config)
        assert r.code in (2, 3), r  # the 400 stops every run; none crashes
        assert "internal error" not in r.err
        outputs += [r.out, r.err]
    status = magsync("status", "--json", config=config)
    assert status.code == 0, status
    outputs.append(status.out)
    assert echo.received, "the echo server was never asked"
    if scenario == "emarsys-oauth2":
        assert echo.tokens, "no OAuth2 token was issued"
    text = "\n".join(outputs)
    stored = state_bytes(tmp_path)
    assert stored, "no state file was written"
    assert "400" in text and "***" in text  # the echo did arrive, redacted
    leaks = sorted(f for value in credentials(echo, config) for f in forms(value)
                   if f in text or f.encode() in stored)
    assert leaks == []
    # the run history holds the (redacted) reason, for `status`
    runs = json.loads(status.out)
    assert "400" in json.dumps(runs)


def test_a_message_that_quotes_a_digest_is_redacted_even_when_unknown(
        magsync: Any) -> None:
    from magsync.util.logs import get_logger

    r = magsync("status")
    assert r.code == 0
    get_logger("test").warning('server said: PasswordDigest=\\"ab\\/cd+ef==\\", '
                               'Nonce="0123456789abcdef", Authorization: Bearer '
                               'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig')
    err = magsync.capsys.readouterr().err
    assert "ab\\/cd" not in err and "0123456789abcdef" not in err and "eyJhbGci" not in err
    assert 'PasswordDigest=\\"***' in err and "Bearer ***" in err
