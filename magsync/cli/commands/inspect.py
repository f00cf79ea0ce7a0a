"""The commands that read and report: ``check``, ``status``, ``fields`` and ``health``.

What they exist to print is printed under -q too (only ``check`` narrows it to its WARN
and FAIL lines).
"""

from __future__ import annotations

import click

from magsync.cli.runner import app_of, fail, read_state_file, report_output
from magsync.errors import EXIT_CONFIG, EXIT_OK, EXIT_PARTIAL

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.command()
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate the config and reach both APIs; change nothing.

    Prints each check with OK/WARN/FAIL (-q: the WARN and FAIL lines only); exits 3 when
    a remote system is unreachable or refuses the credentials, 2 for any other failed
    check.
    """
    from magsync.ops.check import results_as_dict, run_checks

    app = app_of(ctx)
    results = run_checks(app.config)
    failed = [r for r in results if not r.ok]
    # 3 when a remote system was unreachable or refused the credentials, else 2
    code = max((r.exit_code for r in failed), default=EXIT_OK)
    if as_json:
        report_output(app).json(results_as_dict(results, code))
    else:
        report_output(app).checks(results, problems_only=app.quiet)
    if failed:
        fail(code, f"{len(failed)} check{'s' if len(failed) != 1 else ''} failed")


@click.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Last run of each command, watermarks, queue depth, dead contacts and the accounts
    the state file is bound to. Read-only; needs only state.path from the config."""
    from magsync.ops.status import collect_status

    app = app_of(ctx)
    path = app.state_path()
    data = read_state_file(path, lambda store: collect_status(store, path))
    out = report_output(app)
    if as_json:
        out.json(data)
    else:
        out.status(data)


@click.command()
@click.option("--create-missing", is_flag=True,
              help="Create missing custom fields referenced by name (not choice fields: "
                   "Emarsys cannot create those over the API).")
@click.pass_context
def fields(ctx: click.Context, create_missing: bool) -> None:
    """Show the mapping: Magento attribute -> Emarsys field id, name, type, and whether it
    exists and fits its converter (exit 2 when one does not)."""
    from magsync.ops.fields import list_field_rows

    app = app_of(ctx)
    rows, failed = list_field_rows(app.config(), create_missing=create_missing)
    report_output(app).table(["Magento attribute", "Emarsys field", "id", "type", "status"],
                             rows)
    if failed:
        fail(EXIT_CONFIG, failed)


@click.command()
@json_option
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> int:
    """Is the sync healthy? For monitoring (Nagios, monit, systemd OnFailure=).

    Exit 0 when every command the config's sync.mode schedules last succeeded (exit 0 or
    1) within its interval plus a grace (sync-realtime 15 minutes, the daily commands 26
    hours; time during which another run held the lock does not count), no contact became
    dead in the last 24 hours and no queued contact is older than 2 days; else exit 1
    with one line per problem. Read-only; needs only state.path and sync.mode from the
    config, so it runs without the secrets' environment variables.
    """
    from magsync.cli.app import find_config_path
    from magsync.config import load_sync_settings
    from magsync.ops.health import check_health, summary_line
    from magsync.state.lock import probe_lock
    from magsync.util.timeutil import utcnow

    app = app_of(ctx)
    state_path, sync = load_sync_settings(find_config_path(app.config_path))
    try:
        held = probe_lock(state_path) is not None
    except OSError:  # a lock file this user may not open: nobody can tell
        held = False
    now = utcnow()
    report = read_state_file(state_path, lambda store: check_health(
        store, sync.mode, state_path, now, lock_held=held))
    out = report_output(app)
    if as_json:
        out.json(report)
    else:
        for line in report["problems"] or [summary_line(report)]:
            out.line(line)
    return EXIT_OK if report["healthy"] else EXIT_PARTIAL



COMMANDS = [check, status, fields, health]
