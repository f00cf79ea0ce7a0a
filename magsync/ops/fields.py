"""``magsync fields``: the mapping as Emarsys sees it, and creating what is missing."""

from __future__ import annotations

from magsync.config import Config, iter_secrets
from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.fields import report_fields


def list_field_rows(cfg: Config, *, create_missing: bool = False
                    ) -> tuple[list[list[str]], str]:
    """Table rows, and a failure message ("" when every field exists, or was created,
    and fits its converter)."""
    client = EmarsysClient.from_config(cfg.emarsys, secrets=iter_secrets(cfg))
    try:
        rows = report_fields(cfg, client, create_missing=create_missing)
    finally:
        client.close()
    table: list[list[str]] = []
    missing = misfit = 0
    for r in rows:
        if r.field is None:
            missing += 1
            table.append([r.attribute, str(r.ref), "-", "-", r.problem or "missing"])
        else:
            misfit += bool(r.problem)
            status = "created" if r.created else (r.problem or "ok")
            table.append([r.attribute, r.field.name, str(r.field.id), r.field.type, status])
    problems = []
    if missing:
        problems.append(f"{missing} mapped Emarsys field(s) missing"
                        + ("" if create_missing else
                           "; run `magsync fields --create-missing` to create those named "
                           "by name"))
    if misfit:
        problems.append(f"{misfit} mapped Emarsys field(s) do not fit their converter "
                        "(see the status column)")
    return table, "; ".join(problems)
