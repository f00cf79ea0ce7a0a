"""What every command shares: the ``App`` of a click context, a writing command run
under the lock with progress and its report rendered, and a deliberate non-zero exit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import click

from magsync.cli.app import App
from magsync.cli.output import Output
from magsync.errors import EXIT_CONFIG, EXIT_INTERNAL, MagsyncError, interrupt_exit_code
from magsync.state import StateStore
from magsync.state.store import read_state
from magsync.util.logs import emit

T = TypeVar("T")


class _RunOptions(Protocol):
    @property
    def dry_run(self) -> bool: ...


Opts = TypeVar("Opts", bound=_RunOptions)

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
    """What a command prints besides its purpose (summaries, confirmations): nothing under
    -q."""
    return Output(quiet=app.quiet, is_tty=app.is_tty)


def report_output(app: App) -> Output:
    """For what a command exists to print (status, queue list, fields, check, health):
    -q does not hide it."""
    return Output(quiet=False, is_tty=app.is_tty)


def read_state_file(path: Path, read: Callable[[StateStore | None], T]) -> T:
    """``read(store)`` on the state file, read-only and without the lock (``status``,
    ``queue list``, ``health``); ``read(None)`` when there is no state file yet."""
    found = read_state(path, read)
    return read(None) if found is None else found


def run_with_options(app: App, command: str, work: Callable[[Any, Any, Opts, Any], Any],
                     opts: Opts) -> int:
    """``run_writing`` for a library function called as ``work(cfg, store, opts,
    progress)``, as the sync commands' are; a dry run is the options' own (so no command
    can forget to say it: no pings, no metrics, no binding recorded)."""
    return run_writing(app, command, lambda cfg, store, hook: work(cfg, store, opts, hook),
                       dry_run=opts.dry_run)


def run_writing(app: App, command: str, work: Callable[[Any, Any, Any], Any], *,
                dry_run: bool = False) -> int:
    """A writing command: the lock and state file, progress on a terminal, the summary;
    around it the monitoring pings and metrics (none for a dry run, for exit 75, or for
    a failure before the config is loaded)."""
    cfg = app.config()
    monitor = run_monitor(cfg, command, enabled=not dry_run)
    try:
        with app.writing(command, dry_run=dry_run) as store:
            monitor.started()
            try:
                with _progress(app) as hook:
                    report = work(cfg, store, hook)
                monitor.counts = report.counts
            finally:
                monitor.observe(store)
        code = render(app, report)
    except BaseException as exc:
        monitor.finish(exit_code_of(exc))
        raise
    monitor.finish(code)
    return code


class _Unmonitored:
    """What ``run_monitor`` gives when no monitoring is configured: it does nothing (and
    needs no import of the metrics and ping modules)."""

    counts: Any = None

    def started(self) -> None:
        pass

    def observe(self, store: Any) -> None:
        pass

    def finish(self, exit_code: int) -> None:
        pass


def run_monitor(cfg: Any, command: str, *, enabled: bool = True) -> Any:
    """The pings and metrics around one writing run of ``command`` (``ops.monitor``)."""
    if not (cfg.monitoring.textfile or cfg.monitoring.ping_url(command)):
        return _Unmonitored()
    from magsync.ops.monitor import RunMonitor

    return RunMonitor(cfg, command, enabled=enabled)


def exit_code_of(exc: BaseException) -> int:
    """The exit code ``run()`` turns an exception into."""
    if isinstance(exc, Exit):
        return exc.code
    if isinstance(exc, MagsyncError):
        return exc.exit_code
    if isinstance(exc, (KeyboardInterrupt, click.exceptions.Abort)):
        return interrupt_exit_code(exc)
    if isinstance(exc, click.exceptions.Exit):
        return int(exc.exit_code)
    if isinstance(exc, click.ClickException):
        return EXIT_CONFIG
    return EXIT_INTERNAL


def render(app: App, report: Any) -> int:
    """Print a run's summary (and payload samples with -v under --dry-run).

    A run that needs attention (exit code not 0) prints its notes once, on stderr, also
    under -q: cron mails what reaches stderr. Otherwise they follow the summary.
    """
    out = output(app)
    title = report.command + (" (dry run: nothing written)" if report.dry_run else "")
    code = int(report.exit_code)
    out.summary(title, report.counts, duration=report.duration,
                notes=() if code else report.notes)
    if report.dry_run and app.verbose:
        for sample in report.samples:
            out.line(f"  sample payload: {sample}")
    if code:
        for note in report.notes or [f"exit {code}"]:
            emit(f"{report.command}: {note}", level="warning" if code == 1 else "error",
                 plain=f"magsync: {report.command}: {note}", command=report.command,
                 exit_code=code)
    return code


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
