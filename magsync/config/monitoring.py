"""The ``monitoring:`` section: the Prometheus textfile and the per-command ping URLs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magsync.config.reader import Reader, Secret, kind
from magsync.config.rules import read_secret_url
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
        # the URL registry's rule (https, http only to loopback), never quoting the value:
        # the URL is a secret (its path is the check's key)
        before = len(r.problems)
        url = read_secret_url(r, raw, command, where, required=True)
        if url is not None and len(r.problems) == before:
            out.append((command, url))
    return tuple(out)
