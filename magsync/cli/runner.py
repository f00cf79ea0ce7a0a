"""What every command shares: the ``App`` of a click context, a writing command run
under the lock with progress and its report rendered, and a deliberate non-zero exit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import click

from magsync.cli.app import App
from magsync.cli.output import Output
from magsync.util.logs import scrub

dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Read and plan everything, write nothing.")


def _when(value: str | None) -> Any:
    if value is None:
        return None
    from magsync.util.timeutil import parse_when

    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


since_option = click.option(
    "--since", metavar="WHEN", callback=lambda c, p, v: _when(v),
    help="Also read changes since WHEN (ISO date/date-time or 48h, 7d); only widens the "
         "window.")


def app_of(ctx: click.Context) -> App:
    """The global options and resources of this invocation."""
    app = ctx.find_object(App)
    assert app is not None
    return app


def output(app: App) -> Output:
    return Output(quiet=app.quiet, is_tty=app.is_tty)


def run_writing(app: App, command: str, work: Callable[[Any, Any, Any], Any], *,
                dry_run: bool = False) -> int:
    """A writing command: the lock and state file, progress on a terminal, the summary."""
    with app.writing(command, dry_run=dry_run) as store, _progress(app) as hook:
        report = work(app.config(), store, hook)
    return render(app, report)


def render(app: App, report: Any) -> int:
    """Print a run's summary (and payload samples with -v under --dry-run)."""
    out = output(app)
    title = report.command + (" (dry run: nothing written)" if report.dry_run else "")
    out.summary(title, report.counts, duration=report.duration, notes=report.notes)
    if report.dry_run and app.verbose:
        for sample in report.samples:
            out.line(f"  sample payload: {sample}")
    if report.exit_code:
        # Also under -q: cron mails what reaches stderr, and this run needs attention.
        for note in report.notes[:5] or [f"exit {report.exit_code}"]:
            click.echo(f"magsync: {report.command}: {scrub(note)}", err=True)
    return int(report.exit_code)


def _progress(app: App) -> Any:
    from magsync.cli.progress import progress_hook

    return progress_hook(enabled=app.is_tty and not app.quiet)


class Exit(Exception):
    """A command's deliberate non-zero exit, with a one-line message."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fail(code: int, message: str) -> NoReturn:
    raise Exit(code, message)
