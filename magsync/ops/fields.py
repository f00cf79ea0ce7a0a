"""``magsync fields``: the mapping as Emarsys sees it, and creating what is missing."""

from __future__ import annotations

from magsync.config import Config, iter_secrets
from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.fields import report_fields


def list_field_rows(cfg: Config, *, create_missing: bool = False
                    ) -> tuple[list[list[str]], str]:
    """Table rows, and a failure message ("" when every field exists or was created)."""
    client = EmarsysClient.from_config(cfg.emarsys, secrets=iter_secrets(cfg))
    try:
        rows = report_fields(cfg, client, create_missing=create_missing)
    finally:
        client.close()
    table: list[list[str]] = []
    missing = 0
    for r in rows:
        if r.field is None:
            missing += 1
            status = r.problem or "missing"
            table.append([r.attribute, str(r.ref), "-", "-", status])
        else:
            status = "created" if r.created else ("ok" if not r.problem else r.problem)
            table.append([r.attribute, r.field.name, str(r.field.id), r.field.type, status])
    failed = ""
    if missing:
        failed = (f"{missing} mapped Emarsys field(s) missing"
                  + ("" if create_missing else
                     "; run `magsync fields --create-missing` to create those named by name"))
    return table, failed
