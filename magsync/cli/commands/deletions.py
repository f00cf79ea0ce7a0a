"""People deleted in Magento: ``reconcile`` (find them, apply ``sync.deletions``) and
``forget`` (erase one person at once)."""

from __future__ import annotations

import sys

import click

from magsync.cli.runner import app_of, dry_run_option, fail, output, render, run_with_options
from magsync.errors import EXIT_CONFIG


@click.command("reconcile")
@dry_run_option
@click.option("--allow-deletions", type=click.IntRange(min=0), metavar="N",
              help="Apply the deletions found when there are at most N, even beyond "
                   "sync.max_deletions (else none).")
@click.pass_context
def reconcile_cmd(ctx: click.Context, dry_run: bool, allow_deletions: int | None) -> int:
    """Find the contacts whose Magento customer or guest subscriber no longer exists and
    apply sync.deletions (keep, unsubscribe or delete) to them."""
    from magsync.sync.reconcile import ReconcileOptions, reconcile

    app = app_of(ctx)
    opts = ReconcileOptions(dry_run=dry_run, allow_deletions=allow_deletions,
                            verbose=app.verbose)
    return run_with_options(app, "reconcile", reconcile, opts)


@click.command("forget")
@click.option("--customer-id", type=click.IntRange(min=1), metavar="N",
              help="The Magento customer id.")
@click.option("--subscriber-id", type=click.IntRange(min=1), metavar="N",
              help="The Magento newsletter subscriber id (a guest).")
@click.option("--email", metavar="E", help="Every contact magsync holds with this email.")
@click.option("--yes", is_flag=True, help="Do not ask (needed without a terminal).")
@click.pass_context
def forget_cmd(ctx: click.Context, customer_id: int | None, subscriber_id: int | None,
               email: str | None, yes: bool) -> int:
    """Erase one person (GDPR): delete their Emarsys contact and every row about them in
    the state file. Refuses while Magento still holds them."""
    from magsync.sync.forget import Person, forget

    if sum(x is not None for x in (customer_id, subscriber_id, email)) != 1:
        fail(EXIT_CONFIG, "forget needs exactly one of --customer-id, --subscriber-id and "
                          "--email")
    if email is not None and "@" not in email:
        fail(EXIT_CONFIG, "--email needs an email address")
    if not yes and not sys.stdin.isatty():
        fail(EXIT_CONFIG, "forget deletes in Emarsys and cannot be undone: pass --yes to "
                          "confirm (no terminal to ask on)")
    app = app_of(ctx)
    who = Person(customer_id, subscriber_id, email)
    with app.writing("forget") as store:
        result = forget(app.config(), store, who, lambda text: yes or click.confirm(
            text, default=False))
    out = output(app)
    for key in result.erased:
        out.line(f"{key}: deleted in Emarsys, every row about it erased from the state file")
    for key in result.failed:
        out.line(f"{key}: Emarsys did not confirm the deletion; rows kept, deletion queued")
    return render(app, result.report)


COMMANDS = [reconcile_cmd, forget_cmd]
