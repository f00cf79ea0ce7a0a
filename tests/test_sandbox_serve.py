"""``magsync sandbox serve`` as a real process: the config it writes works as-is for
every kind of request, and SIGINT/SIGTERM stop it cleanly."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from magsync.errors import ConfigError
from magsync.sandbox.serve import READY_PREFIX, read_knobs

GUARD_SECONDS = 60  # only kills a hung sandbox; nothing asserts on time


class Served:
    """A running ``magsync sandbox serve`` process and what it printed so far."""

    def __init__(self, proc: subprocess.Popen[str], lines: list[str]) -> None:
        self.proc, self.lines = proc, lines

    @property
    def ready(self) -> str:
        return next(line for line in self.lines if line.startswith(READY_PREFIX))

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str, str]:
        """Send ``sig``; (exit code, rest of stdout, stderr)."""
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=GUARD_SECONDS)
        return self.proc.returncode, out, err


def start_serve(*args: str, env: dict[str, str] | None = None) -> Served:
    """Start the command and read stdout up to (and including) the ready line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "magsync", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    guard = threading.Timer(GUARD_SECONDS, proc.kill)
    guard.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(READY_PREFIX):
                return Served(proc, lines)
    finally:
        guard.cancel()
    err = proc.stderr.read() if proc.stderr else ""
    proc.wait()
    raise AssertionError(f"no ready line (exit {proc.returncode}): {lines} {err}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A sandbox with 40 customers and 15 subscribers, config written to tmp_path."""
    s = start_serve("sandbox", "serve", "--customers", "40", "--subscribers", "15",
                    "--seed", "5", "--write-config", str(tmp_path / "sandbox.yaml"))
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.communicate()


def wsse_header(username: str, secret: str) -> dict[str, str]:
    """Built here from API-NOTES, independently of magsync's own client."""
    nonce = secrets.token_hex(16)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(
        hashlib.sha1((nonce + created + secret).encode()).hexdigest().encode()).decode()
    return {"X-WSSE": f'UsernameToken Username="{username}", PasswordDigest="{digest}", '
                      f'Nonce="{nonce}", Created="{created}"'}


def magento_oauth(auth: dict[str, str], *, secret: str | None = None) -> OAuth1:
    return OAuth1(auth["consumer_key"], secret or auth["consumer_secret"],
                  auth["access_token"], auth["access_token_secret"],
                  signature_method=SIGNATURE_HMAC_SHA256)


def emarsys_call(cfg: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    auth = cfg["emarsys"]["auth"]
    resp = requests.request(method, f"{cfg['emarsys']['api_url']}/{path}",
                            headers=wsse_header(auth["username"], auth["secret"]),
                            json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    reply = resp.json()
    assert reply["replyCode"] == 0, reply
    return reply["data"]


def run_magsync(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "magsync", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=GUARD_SECONDS)


def test_written_config_is_private_and_keeps_state_beside_it(served: Served,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "sandbox.yaml"
    assert path.stat().st_mode & 0o777 == 0o600
    cfg = yaml.safe_load(path.read_text())
    assert cfg["state"]["path"] == str(tmp_path / "sandbox.sandbox-state.db")
    assert cfg["magento"]["auth"]["method"] == "oauth1"
    assert cfg["emarsys"]["auth"]["method"] == "wsse"
    assert cfg["magento"]["base_url"] in served.ready
    assert cfg["emarsys"]["api_url"] in served.ready
    # the config printed on stdout is the one written
    printed = served.lines[served.lines.index(next(
        line for line in served.lines if line.startswith("# ready-to-use"))) + 1:]
    assert yaml.safe_load("\n".join(printed[:printed.index("")])) == cfg


def test_check_passes_with_the_written_config(served: Served, tmp_path: Path) -> None:
    result = run_magsync(tmp_path / "sandbox.yaml", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout


def test_magento_accepts_oauth1_search_and_subscriptions(served: Served,
                                                         tmp_path: Path) -> None:
    cfg = yaml.safe_load((tmp_path / "sandbox.yaml").read_text())
    root = f"{cfg['magento']['base_url']}/rest/{cfg['magento']['store_code']}/V1"
    auth = cfg["magento"]["auth"]
    search = requests.get(f"{root}/customers/search",
                          params={"searchCriteria[pageSize]": "7"},
                          auth=magento_oauth(auth), timeout=10)
    assert search.status_code == 200, search.text
    assert search.json()["total_count"] == 40
    assert len(search.json()["items"]) == 7
    subs = requests.get(f"{root}/emarsys/subscriptions", params={"page_size": "100"},
                        auth=magento_oauth(auth), timeout=10)
    assert subs.status_code == 200, subs.text
    assert subs.json()["total_count"] == 15
    # the signature is really checked: a wrong secret is refused
    refused = requests.get(f"{root}/customers/search", auth=magento_oauth(auth, secret="x"),
                           timeout=10)
    assert refused.status_code == 401


def test_emarsys_accepts_wsse_fields_and_getdata(served: Served, tmp_path: Path) -> None:
    config = tmp_path / "sandbox.yaml"
    cfg = yaml.safe_load(config.read_text())
    names = {f["name"]: f["id"] for f in emarsys_call(cfg, "GET", "field")}
    assert "Magento Customer ID" in names and "Magento Subscriber ID" in names
    exported = run_magsync(config, "-q", "export-initial")
    assert exported.returncode == 0, exported.stderr
    key = str(names["Magento Customer ID"])
    data = emarsys_call(cfg, "POST", "contact/getdata",
                        {"keyId": key, "keyValues": ["1", "2"], "fields": [key, 3, 31]})
    assert sorted(str(row[key]) for row in data["result"]) == ["1", "2"]


def test_sigint_stops_cleanly(served: Served) -> None:
    base = served.ready.split("Magento ", 1)[1].split(",", 1)[0]
    code, out, err = served.stop(signal.SIGINT)
    assert code == 0, err
    assert "sandbox stopped" in out
    assert "Traceback" not in err
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/rest/all/V1/customers/search", timeout=5)


def test_sigterm_stops_cleanly_and_quiet_prints_only_the_ready_line(tmp_path: Path) -> None:
    served = start_serve("-q", "sandbox", "serve", "--customers", "5", "--subscribers", "2")
    code, out, err = served.stop(signal.SIGTERM)
    assert code == 0, err
    assert served.lines == [served.ready]
    assert out == "" and err == ""


def test_printed_config_uses_a_temp_state_dir_that_is_removed_at_exit() -> None:
    served = start_serve("sandbox", "serve", "--customers", "5", "--subscribers", "2")
    state_line = next(line for line in served.lines if line.strip().startswith("path:"))
    state_dir = Path(state_line.split("path:", 1)[1].strip()).parent
    assert state_dir.is_dir()
    code, _, err = served.stop()
    assert code == 0, err
    assert not state_dir.exists()


def test_log_bodies_off_still_counts_requests(tmp_path: Path) -> None:
    served = start_serve("sandbox", "serve", "--customers", "5", "--subscribers", "2",
                         "--write-config", str(tmp_path / "c.yaml"),
                         env={"MAGSYNC_SANDBOX_LOG_BODIES": "0"})
    try:
        cfg = yaml.safe_load((tmp_path / "c.yaml").read_text())
        emarsys_call(cfg, "POST", "contact/getdata", {"keyId": "3", "keyValues": ["a@b.c"]})
        base = cfg["emarsys"]["api_url"].rsplit("/api/", 1)[0]
        log = requests.get(f"{base}/_sandbox/log", timeout=10).json()
        assert [(r["path"], r["body"]) for r in log] == [("/api/v2/contact/getdata", None)]
        stats = requests.get(f"{base}/_sandbox/stats", timeout=10).json()
        assert stats["total"] == 1
        assert stats["by_route"] == {"POST /api/v2/contact/getdata": 1}
    finally:
        assert served.stop()[0] == 0


def test_busy_port_is_a_usage_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "magsync", "sandbox", "serve", "--customers", "1",
             "--port-magento", str(port)], capture_output=True, text=True,
            timeout=GUARD_SECONDS)
    assert result.returncode == 2
    assert "cannot start the sandbox" in result.stderr
    assert READY_PREFIX not in result.stdout


def test_malformed_knob_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        read_knobs({"MAGSYNC_SANDBOX_LATENCY_MS": "fast", "MAGSYNC_SANDBOX_RATE_LIMIT": "0"})
    assert info.value.problems == ["MAGSYNC_SANDBOX_LATENCY_MS: not a number: 'fast'",
                                   "MAGSYNC_SANDBOX_RATE_LIMIT: must be at least 1"]
    knobs = read_knobs({"MAGSYNC_SANDBOX_LATENCY_MS": "20", "MAGSYNC_SANDBOX_LOG_BODIES": "0"})
    assert (knobs.latency_ms, knobs.log_bodies, knobs.rate_limit) == (20.0, False, 100000)


def test_stats_endpoint_counts_by_route_and_status(tmp_path: Path) -> None:
    served = start_serve("sandbox", "serve", "--customers", "3", "--subscribers", "1",
                         "--write-config", str(tmp_path / "c.yaml"))
    try:
        cfg = yaml.safe_load((tmp_path / "c.yaml").read_text())
        base = cfg["magento"]["base_url"]
        auth = magento_oauth(cfg["magento"]["auth"])
        for cid in (1, 2, 99999):
            requests.get(f"{base}/rest/all/V1/customers/{cid}", auth=auth, timeout=10)
        stats = json.loads(requests.get(f"{base}/_sandbox/stats", timeout=10).text)
        assert stats == {"total": 3, "by_status": {"200": 2, "404": 1},
                         "by_route": {"GET /rest/all/V1/customers/{id}": 3}}
    finally:
        assert served.stop()[0] == 0


# -- --write-config never overwrites a config by accident ---------------------------------


def test_write_config_refuses_an_existing_file(tmp_path: Path) -> None:
    production = tmp_path / "magsync.yaml"
    production.write_text("magento: {base_url: https://shop.example.com}\n")
    result = subprocess.run(
        [sys.executable, "-m", "magsync", "sandbox", "serve", "--customers", "2",
         "--subscribers", "1", "--write-config", str(production)],
        capture_output=True, text=True, timeout=GUARD_SECONDS)
    assert result.returncode == 2, result
    assert result.stderr == (f"magsync: error: {production} already exists; sandbox serve "
                             "does not overwrite a config (hint: pass --force to replace "
                             "it, or choose another --write-config path)\n")
    assert READY_PREFIX not in result.stdout
    assert production.read_text() == "magento: {base_url: https://shop.example.com}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["magsync.yaml"]


def test_write_config_with_force_replaces_a_symlink_not_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target.yaml"
    target.write_text("keep: me\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    served = start_serve("sandbox", "serve", "--customers", "2", "--subscribers", "1",
                         "--write-config", str(link), "--force")
    try:
        assert not link.is_symlink() and link.stat().st_mode & 0o777 == 0o600
        assert target.read_text() == "keep: me\n"
        cfg = yaml.safe_load(link.read_text())
        assert cfg["state"]["path"] == str(tmp_path / "link.sandbox-state.db")
    finally:
        served.stop()


def test_written_config_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "open.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "magsync", "sandbox", "serve", "--customers", "2",
         "--subscribers", "1", "--write-config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.umask(0))
    served = Served(proc, [])
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(READY_PREFIX):
                break
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        served.stop()
