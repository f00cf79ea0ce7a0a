"""Progress display: a rich bar per phase on a terminal (with the total and an ETA where
the total is known: the customer search's ``total_count``, the subscriber count), nothing
under cron."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from magsync.sync.run import ProgressHook

if TYPE_CHECKING:
    from rich.progress import TaskID


@contextmanager
def progress_hook(*, enabled: bool) -> Iterator[ProgressHook | None]:
    """A ``(phase, done, total)`` callback that draws progress, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description:<18}"), BarColumn(),
                  MofNCompleteColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
                  TextColumn("left"), TimeRemainingColumn(), transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def hook(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield hook
