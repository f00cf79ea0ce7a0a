"""The command line: parse, call one library function, render. Errors are mapped to exit
codes in one place, ``main()``."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, NoReturn

import click

from magsync import __version__
from magsync.cli.app import App
from magsync.cli.commands import deletions, inspect, queue, setup, state, sync
from magsync.cli.runner import Exit, exit_code_of
from magsync.errors import EXIT_OK, LockHeld, MagsyncError, Terminated
from magsync.util.logs import emit, is_json_logging, scrub, setup_logging

COMPLETE_VAR = "_MAGSYNC_COMPLETE"  # eval "$(_MAGSYNC_COMPLETE=bash_source magsync)"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


EXIT_CODES = """\b
Exit codes:
  0    all done
  1    finished, but some contacts failed (queued or dead; the summary says how many);
       health: not healthy
  2    usage, configuration or safety stop
  3    a remote system was unreachable or refused the credentials (after retries)
  70   internal error (a bug: run with --debug and report it)
  75   another magsync run holds the lock on this state file (nothing done)
  130  interrupted (Ctrl-C); 143: terminated (SIGTERM). The next run continues.
"""


@click.group(context_settings=CONTEXT, epilog=EXIT_CODES)
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
    # --debug is read by run() from the arguments: it must count before click parses them
    ctx.obj = App(config_path=config_path, verbose=verbose, quiet=quiet, lock_wait=lock_wait,
                  run_cli=run)


for _module in (inspect, queue, setup, state, sync, deletions):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and map every error to its exit code."""
    from magsync.util.memory import limit_malloc_arenas, tune_gc

    limit_malloc_arenas()
    tune_gc()
    stop_on_sigterm()
    sys.exit(run(argv))  # run() reads --debug and -q from the arguments itself


def stop_on_sigterm() -> None:
    """SIGTERM (systemd, ``timeout``) stops a run like Ctrl-C: ``Terminated`` is raised in
    the main thread, the run commits what finished, is recorded as interrupted and exits
    143. A second SIGTERM while it stops is ignored (SIGKILL still ends it at once). Both
    wait for the end of the few lines that must run whole (``util.interrupts``)."""
    from magsync.util.interrupts import install

    install(Terminated)


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


def run(argv: list[str] | None) -> int:
    """Run the CLI; returns the exit code (the one place errors become exit codes)."""
    # the global flags count when run() is called directly (tests, demo), not only via main()
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    quiet = any(a in ("-q", "--quiet") for a in args)
    # before click parses anything: with --log-json its own errors are JSON too
    setup_logging(quiet=quiet, log_json="--log-json" in args)
    if os.environ.get(COMPLETE_VAR):  # shell completion: click answers and exits
        cli.main(args=args, prog_name="magsync", complete_var=COMPLETE_VAR)
    try:
        # not cli.main(): it turns Ctrl-C and SIGTERM into a bare Abort after printing an
        # empty line, and the exit code (130 or 143) and JSON stderr need them as they are
        with cli.make_context("magsync", args) as ctx:
            result: Any = cli.invoke(ctx)
        return int(result) if isinstance(result, int) else EXIT_OK
    except BaseException as exc:  # the one place every error becomes an exit code
        return _report(exc, debug=debug, quiet=quiet)


def _report(exc: BaseException, *, debug: bool, quiet: bool) -> int:
    """Print one line (a JSON object under --log-json) for an error; its exit code."""
    code = exit_code_of(exc)
    if isinstance(exc, Exit):
        if exc.message:
            emit(exc.message, plain=f"magsync: {exc.message}", exit_code=code)
    elif isinstance(exc, LockHeld):
        if not quiet:  # a busy minute is normal under cron
            emit(str(exc), level="warning", plain=f"magsync: {exc}", exit_code=code)
    elif isinstance(exc, MagsyncError):
        _with_traceback(f"error: {exc}", debug, code)
    elif isinstance(exc, click.exceptions.Exit):
        pass
    elif isinstance(exc, click.exceptions.Abort):
        emit("aborted", plain="magsync: aborted", exit_code=code)
    elif isinstance(exc, click.ClickException):
        # click's own errors (bad option, unreadable --file) are usage errors; its exit 1
        # would read as "some contacts failed"
        _usage_error(exc, code)
    elif isinstance(exc, KeyboardInterrupt):
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        emit(f"{what}; the next run continues where this one stopped",
             plain=f"magsync: {what}; the next run continues where this one stopped",
             exit_code=code)
    elif isinstance(exc, Exception):  # a bug: say so plainly, the traceback only with --debug
        _with_traceback(f"internal error: {exc!r} (run with --debug for the traceback)",
                        debug, code)
    else:
        raise exc
    return code


def _with_traceback(message: str, debug: bool, code: int) -> None:
    trace = traceback.format_exc() if debug else None
    if trace and not is_json_logging():
        click.echo(scrub(trace), err=True)
    fields = {"traceback": trace} if trace else {}
    emit(message, plain=f"magsync: {message}", exit_code=code, **fields)


def _usage_error(exc: click.ClickException, code: int) -> None:
    if not is_json_logging():
        exc.show()
        return
    usage = exc.ctx.get_usage() if isinstance(exc, click.UsageError) and exc.ctx else None
    fields = {"usage": usage} if usage else {}
    emit(exc.format_message(), exit_code=code, **fields)
