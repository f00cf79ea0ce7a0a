"""What a command prints: rich tables on a terminal, plain lines under cron, nothing
under ``-q`` (errors go to stderr through the CLI's boundary)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from magsync.model import CheckResult
from magsync.util.logs import scrub

if TYPE_CHECKING:
    from rich.console import Console

SUMMARY_ORDER = ("read", "sent", "created", "updated", "adopted", "attached", "unchanged",
                 "skipped", "failed", "queued", "dead", "conflicts", "unconvertible",
                 "applied", "unknown", "mismatched", "waiting", "campaign_unsubscribes",
                 "drained", "removed", "requests")


class Output:
    """Renders results for a person (terminal) or for cron (plain text)."""

    def __init__(self, *, quiet: bool = False, is_tty: bool = False) -> None:
        self.quiet = quiet
        self.is_tty = is_tty

    @cached_property
    def console(self) -> Console:
        """rich's console, imported when something is printed (a quiet run prints
        nothing, and cron's minutely run should not pay for the import)."""
        from rich.console import Console

        return Console(highlight=False, soft_wrap=not self.is_tty,
                       force_terminal=self.is_tty, no_color=not self.is_tty)

    def line(self, text: str = "") -> None:
        if not self.quiet:
            self.console.print(scrub(text), markup=False)

    def json(self, data: Any) -> None:
        """Machine-readable output is printed even under ``-q``: it was asked for."""
        print(scrub(json.dumps(data, indent=2, default=str)))

    def checks(self, results: Iterable[CheckResult], *, problems_only: bool = False) -> None:
        """One line per check (``problems_only``: the WARN and FAIL lines, for -q)."""
        for r in results:
            if problems_only and r.ok and not r.warning:
                continue
            detail = f" — {r.detail}" if r.detail else ""
            self.console.print(scrub(f"{r.mark:<4} {r.name}{detail}"), markup=False)

    def summary(self, title: str, counts: Mapping[str, int], *, duration: float,
                notes: Iterable[str] = ()) -> None:
        """The one-screen summary at the end of a run."""
        if self.quiet:
            return
        keys = [k for k in SUMMARY_ORDER if k in counts] + sorted(
            k for k in counts if k not in SUMMARY_ORDER)
        if self.is_tty and keys:
            from rich.table import Table

            table = Table(title=f"{title} — {duration:.1f} s", show_header=False)
            table.add_column("what")
            table.add_column("count", justify="right")
            for k in keys:
                table.add_row(k, str(counts[k]))
            self.console.print(table)
        else:
            body = ", ".join(f"{k} {counts[k]}" for k in keys) or "nothing to do"
            self.line(f"{title}: {body} ({duration:.1f} s)")
        for note in notes:
            self.line(f"  {note}")

    def table(self, headers: list[str], rows: Iterable[Iterable[Any]]) -> None:
        if self.quiet:
            return
        cells = [[("" if c is None else str(c)) for c in row] for row in rows]
        if self.is_tty:
            from rich.table import Table

            t = Table(*headers)
            for cell_row in cells:
                t.add_row(*cell_row)
            self.console.print(t)
            return
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
        self.line("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        for cell_row in cells:
            self.line("  ".join(c.ljust(w) for c, w in zip(cell_row, widths, strict=True))
                      .rstrip())

    def _binding(self, binding: dict[str, Any] | None) -> None:
        if binding is None:
            self.line("bound to: no accounts yet (the next writing run records them)")
            return
        from magsync.state.binding import Binding

        lines = Binding.from_dict(binding).describe()
        self.line(f"bound to: {lines[0]}")
        for line in lines[1:]:
            self.line(f"          {line}")

    def status(self, data: Mapping[str, Any]) -> None:
        if self.quiet:
            return
        self.line(f"state file: {data['state_path']}"
                  + ("" if data["state_exists"] else " (not created yet: no run so far)"))
        if data.get("migration"):
            self.line(f"  needs a migration: {data['migration']}")
        if data["state_exists"]:
            self._binding(data.get("binding"))
        runs = data.get("runs") or {}
        if runs:
            self.line("last runs:")
            self.table(["command", "started", "ended", "outcome", "exit", "counts"],
                       [[cmd, r["started_at"], r["ended_at"] or "-", r["outcome"],
                         "" if r["exit_code"] is None else r["exit_code"],
                         ", ".join(f"{k} {v}" for k, v in r["counts"].items())]
                        for cmd, r in runs.items()])
        else:
            self.line("last runs: none")
        marks = data.get("watermarks") or {}
        self.line("watermarks: " + (", ".join(f"{k} {v}" for k, v in marks.items())
                                    or "none"))
        done = data.get("exported") or {}
        self.line("export-initial completed: " + (", ".join(
            f"{k} (started {v})" for k, v in done.items()) or "none yet"))
        q = data.get("queue") or {}
        self.line(f"failsafe queue: {q.get('queued', 0)} queued, {q.get('dead', 0)} dead")
        self.line(f"contacts known: {data.get('contacts', 0)}")
        mirror = data.get("mirror") or {}
        if mirror.get("read_at"):
            self.line(f"subscriber mirror: {mirror['subscribers']} rows, read "
                      f"{mirror['read_at']} ({mirror['age_minutes']} min ago)")
        deletions = data.get("deletions") or {}
        if deletions.get("found") or deletions.get("guest_suspects"):
            self.line(deletion_line(deletions))
        issues = data.get("issues") or []
        if issues:
            self.line("recent issues:")
            for i in issues:
                self.line(f"  {i['at']} {i['kind']} {i['key'] or ''}: {i['detail']}")


def deletion_line(d: Mapping[str, Any]) -> str:
    """``status``'s line about people deleted in Magento and what was done about them."""
    parts = []
    for mode, what in (("keep", "kept with opt-in 2"), ("unsubscribe", "unsubscribed"),
                       ("delete", "deletion pending")):
        counts = (d.get("by_mode") or {}).get(mode) or {}
        done, pending = counts.get("applied", 0), counts.get("pending", 0)
        if mode == "delete" and pending:
            parts.append(f"{pending} {what} (`magsync queue list`)")
        elif done or pending:
            parts.append(f"{done} {what}" + (f", {pending} not confirmed yet" if pending
                                             else ""))
    line = (f"deleted in Magento: {d.get('found', 0)} found, {d.get('erased', 0)} erased; "
            f"{d.get('marked', 0)} still in Emarsys")
    if parts:
        line += f" ({'; '.join(parts)})"
    if d.get("guest_suspects"):
        line += f"; {d['guest_suspects']} guest subscriber(s) missing from one read"
    return line
