"""The command line: parse, call one library function, render. Errors are mapped to exit
codes in one place, ``main()``."""

from __future__ import annotations

import sys
import traceback
from typing import Any, NoReturn

import click

from magsync import __version__
from magsync.app import App
from magsync.errors import EXIT_CONFIG, EXIT_OK, LockHeld, MagsyncError
from magsync.logs import scrub, setup_logging
from magsync.report import Output

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _app(ctx: click.Context) -> App:
    app = ctx.find_object(App)
    assert app is not None
    return app


def _out(app: App) -> Output:
    return Output(quiet=app.quiet, is_tty=app.is_tty)


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

    Prints each check with OK/FAIL; exits 2 when any fails.
    """
    from magsync.check import run_checks

    app = _app(ctx)
    results = run_checks(app)
    _out(app).checks(results)
    failed = [r for r in results if not r.ok]
    if failed:
        _fail(EXIT_CONFIG, f"{len(failed)} check{'s' if len(failed) != 1 else ''} failed")


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
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    quiet = any(a in ("-q", "--quiet") for a in (argv if argv is not None else sys.argv[1:]))
    code = run(argv, debug=debug, quiet=quiet)
    sys.exit(code)


def run(argv: list[str] | None, *, debug: bool = False, quiet: bool = False) -> int:
    """Run the CLI; returns the exit code (the one place errors become exit codes)."""
    # the global flags count when run() is called directly (tests, demo), not only via main()
    args = sys.argv[1:] if argv is None else argv
    debug = debug or "--debug" in args
    quiet = quiet or any(a in ("-q", "--quiet") for a in args)
    try:
        result: Any = cli.main(args=argv, prog_name="magsync", standalone_mode=False)
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
        return EXIT_CONFIG if exc.exit_code == 2 else int(exc.exit_code)
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
