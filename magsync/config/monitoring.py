"""The ``monitoring:`` section: the Prometheus textfile and the per-command ping URLs."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from magsync.config.reader import Reader, Secret, kind
from magsync.config.schema import PING_COMMANDS, MonitoringConfig

SECTION = "monitoring"


def parse_monitoring(r: Reader, raw: dict[str, Any], source: Path | None) -> MonitoringConfig:
    """``monitoring.textfile`` (a ``.prom`` path; relative: beside the config) and
    ``monitoring.ping_urls`` (writing command -> URL, each a secret)."""
    r.known(raw, SECTION, ("textfile", "ping_urls"))
    textfile: Path | None = None
    text = r.string(raw, "textfile", SECTION)
    if text is not None:
        textfile = Path(text).expanduser()
        if not textfile.name.endswith(".prom"):
            r.problem(f"{SECTION}.textfile", "must end in .prom (node_exporter's textfile "
                                             f"collector reads only *.prom files; got {text!r})")
        if not textfile.is_absolute() and source is not None:
            textfile = source.resolve().parent / textfile
    return MonitoringConfig(textfile=textfile, ping_urls=_ping_urls(r, raw.get("ping_urls")))


def _ping_urls(r: Reader, raw: Any) -> tuple[tuple[str, Secret], ...]:
    where = f"{SECTION}.ping_urls"
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        r.problem(where, f"must be a mapping of command -> URL, not {kind(raw)}")
        return ()
    r.known(raw, where, PING_COMMANDS)
    out: list[tuple[str, Secret]] = []
    for command in PING_COMMANDS:
        if command not in raw:
            continue
        url = r.secret(raw, command, where, required=True)
        if url is None:
            continue
        problem = url_problem(url.reveal())
        if problem:
            # never quote the value: the URL is a secret (its path is the check's key)
            r.problem(f"{where}.{command}", problem)
            continue
        out.append((command, url))
    return tuple(out)


# The https-or-loopback rule, kept simple here; the shared URL rule of the other config
# URLs (base_url, api_url, token_url) is meant to replace it.
def url_problem(url: str) -> str:
    """Why ``url`` cannot be a ping URL ("" when it can): https://, or http:// to a
    loopback host only, so that the secret URL never travels unencrypted."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "must be a URL such as https://hc-ping.com/UUID"
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        return "must be a URL such as https://hc-ping.com/UUID"
    if parts.scheme == "http" and not is_loopback(host):
        return "must use https:// (http:// only for a loopback host such as 127.0.0.1)"
    return ""


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
