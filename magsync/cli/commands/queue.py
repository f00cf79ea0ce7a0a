"""``magsync queue list|retry|purge``: the failsafe queue."""

from __future__ import annotations

import sys

import click

from magsync.cli.runner import app_of, fail, output, run_writing
from magsync.errors import EXIT_CONFIG, EXIT_OK


@click.command("queue")
@click.argument("action", type=click.Choice(["list", "retry", "purge"]), default="list")
@click.option("--dead", is_flag=True,
              help="list: dead contacts; retry: revive dead contacts too; purge: only dead.")
@click.option("--yes", is_flag=True, help="purge without asking.")
@click.pass_context
def queue_cmd(ctx: click.Context, action: str, dead: bool, yes: bool) -> int:
    """Show, retry or purge the failsafe queue."""
    from magsync.ops.queue import list_queue, purge_queue

    app = app_of(ctx)
    out = output(app)
    if action == "list":
        listed = app.read_state(lambda store: list_queue(store, dead=dead))
        headers, rows = listed or list_queue(None, dead=dead)
        out.table(headers, rows) if rows else out.line(
            "the failsafe queue is empty" if not dead else "no dead contacts")
        return EXIT_OK
    if action == "purge":
        what = "dead contacts" if dead else "the whole failsafe queue"
        if not yes and not sys.stdin.isatty():
            fail(EXIT_CONFIG, f"queue purge would remove {what}: pass --yes to confirm "
                              "(no terminal to ask on)")
        if not yes and not click.confirm(f"Remove {what}?", default=False):
            fail(EXIT_CONFIG, "nothing purged (pass --yes to skip the question)")
        with app.writing("queue purge") as store:
            out.line(f"purged {purge_queue(store, dead=dead)} contact(s)")
        return EXIT_OK
    from magsync.sync.queue import retry_queue

    return run_writing(app, "queue retry",
                       lambda cfg, store, hook: retry_queue(cfg, store, dead=dead, progress=hook))


COMMANDS = [queue_cmd]
