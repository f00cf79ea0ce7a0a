"""The writing sync commands: ``export-initial``, ``sync-realtime``, ``sync-background``
and ``pull-optin``."""

from __future__ import annotations

from typing import Any

import click

from magsync.cli.runner import app_of, dry_run_option, run_with_options, since_option


@click.command("export-initial")
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

    app = app_of(ctx)
    only = customers is True or subscribers is True
    opts = ExportOptions(customers=customers if customers is not None else not only,
                         subscribers=subscribers if subscribers is not None else not only,
                         restart=restart, dry_run=dry_run, verbose=app.verbose)
    return run_with_options(app, "export-initial", export_initial, opts)


@click.command("sync-realtime")
@dry_run_option
@click.pass_context
def sync_realtime_cmd(ctx: click.Context, dry_run: bool) -> int:
    """Send every contact changed since the last run (cron: every minute)."""
    from magsync.sync.realtime import SyncOptions, sync_realtime

    app = app_of(ctx)
    opts = SyncOptions(dry_run=dry_run, verbose=app.verbose)
    return run_with_options(app, "sync-realtime", sync_realtime, opts)


@click.command("sync-background")
@since_option
@dry_run_option
@click.pass_context
def sync_background_cmd(ctx: click.Context, since: Any, dry_run: bool) -> int:
    """Daily run: changes (background-only mode), mapping changes, failsafe queue."""
    from magsync.sync.background import sync_background
    from magsync.sync.realtime import SyncOptions

    app = app_of(ctx)
    opts = SyncOptions(dry_run=dry_run, since=since, verbose=app.verbose)
    return run_with_options(app, "sync-background", sync_background, opts)


@click.command("pull-optin")
@since_option
@dry_run_option
@click.pass_context
def pull_optin_cmd(ctx: click.Context, since: Any, dry_run: bool) -> int:
    """Bring opt-in changes made in Emarsys back into Magento."""
    from magsync.sync.pull import PullOptions, pull_optin

    app = app_of(ctx)
    opts = PullOptions(since=since, dry_run=dry_run, verbose=app.verbose)
    return run_with_options(app, "pull-optin", pull_optin, opts)


COMMANDS = [export_initial_cmd, sync_realtime_cmd, sync_background_cmd, pull_optin_cmd]
