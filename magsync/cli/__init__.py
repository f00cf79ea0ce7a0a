"""The command line: parse, call one library function, render. Errors are mapped to exit
codes in one place, ``main()``."""

from __future__ import annotations

import sys
import traceback
from typing import Any, NoReturn

import click

from magsync import __version__
from magsync.cli.app import App
from magsync.cli.commands import deletions, inspect, queue, setup, sync
from magsync.cli.runner import Exit
from magsync.errors import EXIT_CONFIG, EXIT_OK, LockHeld, MagsyncError
from magsync.util.logs import scrub, setup_logging

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


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
                  debug=debug, lock_wait=lock_wait, run_cli=run)


for _module in (inspect, queue, setup, sync, deletions):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


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
    except Exit as exc:
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
