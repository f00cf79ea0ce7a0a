"""The commands that read and report: ``check``, ``status`` and ``fields``."""

from __future__ import annotations

import click

from magsync.cli.runner import app_of, fail, output
from magsync.errors import EXIT_CONFIG


@click.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the config and reach both APIs; change nothing.

    Prints each check with OK/FAIL; exits 3 when a remote system is unreachable or refuses
    the credentials, 2 for any other failed check.
    """
    from magsync.ops.check import run_checks

    app = app_of(ctx)
    results = run_checks(app.config)
    output(app).checks(results)
    failed = [r for r in results if not r.ok]
    if failed:
        # 3 when a remote system was unreachable or refused the credentials, else 2
        fail(max(r.exit_code for r in failed),
             f"{len(failed)} check{'s' if len(failed) != 1 else ''} failed")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Last run of each command, watermarks, queue depth, dead contacts and the accounts
    the state file is bound to. Read-only; needs only state.path from the config."""
    from magsync.ops.status import collect_status

    app = app_of(ctx)
    path = app.state_path()
    data = app.read_state(lambda store: collect_status(store, path))
    if data is None:
        data = collect_status(None, path)
    out = output(app)
    if as_json:
        out.json(data)
    else:
        out.status(data)


@click.command()
@click.option("--create-missing", is_flag=True,
              help="Create missing custom fields referenced by name.")
@click.pass_context
def fields(ctx: click.Context, create_missing: bool) -> None:
    """Show the mapping: Magento attribute -> Emarsys field id, name, type, exists."""
    from magsync.ops.fields import list_field_rows

    app = app_of(ctx)
    rows, failed = list_field_rows(app.config(), create_missing=create_missing)
    output(app).table(["Magento attribute", "Emarsys field", "id", "type", "status"], rows)
    if failed:
        fail(EXIT_CONFIG, failed)


COMMANDS = [check, status, fields]
