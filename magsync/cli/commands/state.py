"""``magsync rebind``: the accounts a state file is bound to."""

from __future__ import annotations

import sys

import click

from magsync.cli.runner import app_of, fail, output
from magsync.errors import EXIT_CONFIG, EXIT_OK


@click.command()
@click.option("--yes", is_flag=True, help="Record the new binding without asking.")
@click.pass_context
def rebind(ctx: click.Context, yes: bool) -> int:
    """Accept a legitimate change of the accounts the state file is bound to.

    For the same shop and Emarsys account under a new address or API user (a new domain,
    a rotated API user, WSSE -> OAuth2 and /api/v3): checks the config against both APIs,
    shows the old and new binding and, once confirmed, records the new one, keeping every
    other row of the state file. The key fields cannot change this way.
    """
    from magsync.ops.rebind import apply_rebind, plan_rebind

    app = app_of(ctx)
    out = output(app)
    plan = plan_rebind(app.config())
    out.checks(plan.checks, problems_only=app.quiet)
    if plan.failed:
        fail(max(c.exit_code for c in plan.failed),
             f"rebind: nothing changed: {len(plan.failed)} check(s) of this config failed")
    for line in plan.describe():
        out.line(line)
    if plan.refused:
        fail(EXIT_CONFIG, plan.refused)
    if not plan.changes:
        out.line("the state file is already bound to these accounts: nothing to change")
        return EXIT_OK
    if not yes and not sys.stdin.isatty():
        fail(EXIT_CONFIG, f"rebind would bind {plan.path} to this config's accounts: pass "
                          "--yes to confirm (no terminal to ask on)")
    if not yes and not click.confirm("Bind the state file to this config's accounts?",
                                     default=False):
        fail(EXIT_CONFIG, "nothing changed (pass --yes to skip the question)")
    with app.writing("rebind", enforce_binding=False) as store:
        apply_rebind(store, plan)
    out.line(f"{plan.path} is now bound to this config's accounts")
    return EXIT_OK


COMMANDS = [rebind]
