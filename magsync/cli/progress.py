"""Progress display: a rich spinner line on a terminal, nothing under cron."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from magsync.sync.run import ProgressHook


@contextmanager
def progress_hook(*, enabled: bool) -> Iterator[ProgressHook | None]:
    """A ``(phase, done, total)`` callback that draws progress, or None when disabled."""
    if not enabled:
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  TextColumn("{task.completed} contacts"), TimeElapsedColumn(),
                  transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def hook(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield hook
