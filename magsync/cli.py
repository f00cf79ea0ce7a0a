"""The command line: parse, call one library function, render. Errors are mapped to exit
codes in one place, ``main()``."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import click

from magsync import __version__
from magsync.app import App
from magsync.errors import EXIT_CONFIG, EXIT_OK, LockHeld, MagsyncError
from magsync.report import Output
from magsync.util.logs import scrub, setup_logging

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _app(ctx: click.Context) -> App:
    app = ctx.find_object(App)
    assert app is not None
    return app


def _out(app: App) -> Output:
    return Output(quiet=app.quiet, is_tty=app.is_tty)


dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Read and plan everything, write nothing.")
since_option = click.option(
    "--since", metavar="WHEN", callback=lambda c, p, v: _when(v),
    help="Also read changes since WHEN (ISO date/date-time or 48h, 7d); only widens the "
         "window.")


@click.group(context_settings=CONTEXT)
@click.option("--config", "config_path", metavar="PATH",
              help="Config file (default: $MAGSYNC_CONFIG, else ./magsync.yaml).")
@click.option("-v", "--verbose", count=True, help="More detail (payload samples with -v).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (for cron).")
@click.option("--log-json", is_flag=True, help="One JSON object per log event on stderr.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.option("--lock-wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS",
              show_default=True, help="Wait this long for another run's lock (else exit 75).")
@click.version_option(__version__, prog_name="magsync")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int, quiet: bool,
        log_json: bool, debug: bool, lock_wait: float) -> None:
    """Keep Magento 2 customers and newsletter subscribers in sync with SAP Emarsys."""
    setup_logging(verbose=verbose, quiet=quiet, log_json=log_json)
    ctx.obj = App(config_path=config_path, verbose=verbose, quiet=quiet, log_json=log_json,
                  debug=debug, lock_wait=lock_wait)


@cli.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the config and reach both APIs; change nothing.

    Prints each check with OK/FAIL; exits 3 when a remote system is unreachable or refuses
    the credentials, 2 for any other failed check.
    """
    from magsync.check import run_checks

    app = _app(ctx)
    results = run_checks(app)
    _out(app).checks(results)
    failed = [r for r in results if not r.ok]
    if failed:
        # 3 when a remote system was unreachable or refused the credentials, else 2
        _fail(max(r.exit_code for r in failed),
              f"{len(failed)} check{'s' if len(failed) != 1 else ''} failed")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Last run of each command, watermarks, queue depth and dead contacts."""
    from magsync.status import collect_status

    app = _app(ctx)
    store = app.reading()
    try:
        data = collect_status(store, app.state_path())
    finally:
        if store is not None:
            store.close()
    out = _out(app)
    if as_json:
        out.json(data)
    else:
        out.status(data)


@cli.command()
@click.option("--create-missing", is_flag=True,
              help="Create missing custom fields referenced by name.")
@click.pass_context
def fields(ctx: click.Context, create_missing: bool) -> None:
    """Show the mapping: Magento attribute -> Emarsys field id, name, type, exists."""
    from magsync.fields_command import list_field_rows

    app = _app(ctx)
    rows, failed = list_field_rows(app.config(), create_missing=create_missing)
    _out(app).table(["Magento attribute", "Emarsys field", "id", "type", "status"], rows)
    if failed:
        _fail(EXIT_CONFIG, failed)


@cli.command("export-initial")
@click.option("--customers/--no-customers", "customers", default=None,
              help="Export customers (default: as enabled in config).")
@click.option("--subscribers/--no-subscribers", "subscribers", default=None,
              help="Export guest subscribers (default: as enabled in config).")
@click.option("--restart", is_flag=True,
              help="Start over and send every mapped field again.")
@dry_run_option
@click.pass_context
def export_initial_cmd(ctx: click.Context, customers: bool | None, subscribers: bool | None,
                       restart: bool, dry_run: bool) -> int:
    """Full export of all customers and subscribers into Emarsys (resumable)."""
    from magsync.sync.export import ExportOptions, export_initial

    app = _app(ctx)
    only = customers is True or subscribers is True
    opts = ExportOptions(customers=customers if customers is not None else not only,
                         subscribers=subscribers if subscribers is not None else not only,
                         restart=restart, dry_run=dry_run, verbose=app.verbose)
    return _run(app, "export-initial",
                lambda cfg, store, hook: export_initial(cfg, store, opts, progress=hook))


@cli.command("sync-realtime")
@dry_run_option
@click.pass_context
def sync_realtime_cmd(ctx: click.Context, dry_run: bool) -> int:
    """Send every contact changed since the last run (cron: every minute)."""
    from magsync.sync.realtime import SyncOptions, sync_realtime

    app = _app(ctx)
    opts = SyncOptions(dry_run=dry_run, verbose=app.verbose)
    return _run(app, "sync-realtime",
                lambda cfg, store, hook: sync_realtime(cfg, store, opts, hook))


@cli.command("sync-background")
@since_option
@dry_run_option
@click.pass_context
def sync_background_cmd(ctx: click.Context, since: Any, dry_run: bool) -> int:
    """Daily run: changes (background-only mode), mapping changes, failsafe queue."""
    from magsync.sync.background import sync_background
    from magsync.sync.realtime import SyncOptions

    app = _app(ctx)
    opts = SyncOptions(dry_run=dry_run, since=since, verbose=app.verbose)
    return _run(app, "sync-background",
                lambda cfg, store, hook: sync_background(cfg, store, opts, hook))


@cli.command("queue")
@click.argument("action", type=click.Choice(["list", "retry", "purge"]), default="list")
@click.option("--dead", is_flag=True,
              help="list: dead contacts; retry: revive dead contacts too; purge: only dead.")
@click.option("--yes", is_flag=True, help="purge without asking.")
@click.pass_context
def queue_cmd(ctx: click.Context, action: str, dead: bool, yes: bool) -> int:
    """Show, retry or purge the failsafe queue."""
    from magsync.queue_command import list_queue, purge_queue

    app = _app(ctx)
    out = _out(app)
    if action == "list":
        store = app.reading()
        headers, rows = list_queue(store, dead=dead)
        if store is not None:
            store.close()
        out.table(headers, rows) if rows else out.line(
            "the failsafe queue is empty" if not dead else "no dead contacts")
        return EXIT_OK
    if action == "purge":
        what = "dead contacts" if dead else "the whole failsafe queue"
        if not yes and not sys.stdin.isatty():
            _fail(EXIT_CONFIG, f"queue purge would remove {what}: pass --yes to confirm "
                               "(no terminal to ask on)")
        if not yes and not click.confirm(f"Remove {what}?", default=False):
            _fail(EXIT_CONFIG, "nothing purged (pass --yes to skip the question)")
        with app.writing("queue purge") as store:
            out.line(f"purged {purge_queue(store, dead=dead)} contact(s)")
        return EXIT_OK
    from magsync.sync.queue import retry_queue

    return _run(app, "queue retry",
                lambda cfg, store, hook: retry_queue(cfg, store, dead=dead, progress=hook))


def _when(value: str | None) -> Any:
    if value is None:
        return None
    from magsync.util.timeutil import parse_when

    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("pull-optin")
@since_option
@dry_run_option
@click.pass_context
def pull_optin_cmd(ctx: click.Context, since: Any, dry_run: bool) -> int:
    """Bring opt-in changes made in Emarsys back into Magento."""
    from magsync.sync.pull import PullOptions, pull_optin

    app = _app(ctx)
    opts = PullOptions(since=since, dry_run=dry_run, verbose=app.verbose)
    return _run(app, "pull-optin", lambda cfg, store, hook: pull_optin(cfg, store, opts, hook))


@cli.command()
@click.pass_context
def crontab(ctx: click.Context) -> None:
    """Print the crontab lines that fit the config."""
    from magsync.app import find_config_path
    from magsync.crontab import render_crontab

    app = _app(ctx)
    cfg = app.config()
    click.echo(render_crontab(cfg, cfg.source or find_config_path(app.config_path)), nl=False)


@cli.command()
def demo() -> int:
    """The whole sync against the built-in sandbox: no network, no config."""
    from magsync.demo import run_demo

    return run_demo(click.echo)


@cli.group()
def sandbox() -> None:
    """The built-in simulators of Magento and Emarsys, for trying a mapping safely."""


@sandbox.command("serve")
@click.option("--customers", type=click.IntRange(min=0), default=200, show_default=True,
              help="Customers in the seeded shop.")
@click.option("--subscribers", type=click.IntRange(min=0), default=120, show_default=True,
              help="Newsletter subscribers in the seeded shop.")
@click.option("--port-magento", type=click.IntRange(0, 65535), default=0,
              help="Port of the Magento simulator (default: a free one).")
@click.option("--port-emarsys", type=click.IntRange(0, 65535), default=0,
              help="Port of the Emarsys simulator (default: a free one).")
@click.option("--write-config", "write_config", metavar="PATH",
              help="Also write the ready-to-use config to PATH (state file beside it).")
@click.option("--seed", type=int, default=0, show_default=True, help="Shop generator seed.")
@click.pass_context
def sandbox_serve(ctx: click.Context, customers: int, subscribers: int, port_magento: int,
                  port_emarsys: int, write_config: str | None, seed: int) -> None:
    """Run both simulators in the foreground and print a config for them (Ctrl-C stops)."""
    from magsync.sandbox.serve import serve

    serve(customers=customers, subscribers=subscribers, port_magento=port_magento,
          port_emarsys=port_emarsys, write_config=write_config, seed=seed,
          quiet=_app(ctx).quiet)


def _run(app: App, command: str, work: Callable[[Any, Any, Any], Any]) -> int:
    """A writing command: the lock and state file, progress on a terminal, the summary."""
    with app.writing(command) as store, _progress(app) as hook:
        report = work(app.config(), store, hook)
    return _render(app, report)


def _render(app: App, report: Any) -> int:
    """Print a run's summary (and payload samples with -v under --dry-run)."""
    out = _out(app)
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
    from magsync.progress import progress_hook

    return progress_hook(enabled=app.is_tty and not app.quiet)


def _fail(code: int, message: str) -> NoReturn:
    raise _Exit(code, message)


class _Exit(Exception):
    """A command's deliberate non-zero exit, with a one-line message."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and map every error to its exit code."""
    from magsync.util.memory import limit_malloc_arenas

    limit_malloc_arenas()
    sys.exit(run(argv))  # run() reads --debug and -q from the arguments itself


_GLOBAL_FLAGS = {"-v", "--verbose", "-q", "--quiet", "--log-json", "--debug", "-vv", "-vvv"}
_GLOBAL_VALUED = {"--config", "--lock-wait"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options typed after the command in front of it, so that
    ``magsync export-initial --dry-run -v`` works like ``magsync -v export-initial
    --dry-run`` (no command defines an option of the same name)."""
    head: list[str] = []
    rest = list(argv)
    while rest and rest[0].startswith("-"):  # already in front: keep as is
        token = rest.pop(0)
        head.append(token)
        if token in _GLOBAL_VALUED and rest:
            head.append(rest.pop(0))
    if not rest:
        return head
    command, tail = [rest[0]], rest[1:]
    moved: list[str] = []
    i = 0
    while i < len(tail):
        token = tail[i]
        if token == "--":
            command += tail[i:]
            break
        if token in _GLOBAL_FLAGS or token.startswith(("--config=", "--lock-wait=")):
            moved.append(token)
        elif token in _GLOBAL_VALUED and i + 1 < len(tail):
            moved += [token, tail[i + 1]]
            i += 1
        else:
            command.append(token)
        i += 1
    return head + moved + command


def run(argv: list[str] | None, *, debug: bool = False, quiet: bool = False) -> int:
    """Run the CLI; returns the exit code (the one place errors become exit codes)."""
    # the global flags count when run() is called directly (tests, demo), not only via main()
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    debug = debug or "--debug" in args
    quiet = quiet or any(a in ("-q", "--quiet") for a in args)
    try:
        result: Any = cli.main(args=args, prog_name="magsync", standalone_mode=False)
        return int(result) if isinstance(result, int) else EXIT_OK
    except _Exit as exc:
        if exc.message:
            click.echo(f"magsync: {scrub(exc.message)}", err=True)
        return exc.code
    except LockHeld as exc:
        if not quiet:
            click.echo(f"magsync: {scrub(str(exc))}", err=True)
        return exc.exit_code
    except MagsyncError as exc:
        if debug:
            click.echo(scrub(traceback.format_exc()), err=True)
        click.echo(f"magsync: error: {scrub(str(exc))}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("magsync: aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        # click's own errors (bad option, unreadable --file) are usage errors; its exit 1
        # would read as "some contacts failed"
        return EXIT_CONFIG
    except KeyboardInterrupt:
        click.echo("magsync: interrupted; the next run continues where this one stopped",
                   err=True)
        return 130
    except Exception as exc:  # a bug: say so plainly, the traceback only with --debug
        if debug:
            click.echo(scrub(traceback.format_exc()), err=True)
        click.echo(f"magsync: internal error: {scrub(repr(exc))} (run with --debug for the "
                   "traceback)", err=True)
        return 70
