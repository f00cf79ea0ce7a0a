"""``magsync queue list|retry|purge``: the failsafe queue (``magsync queue`` alone lists
it)."""

from __future__ import annotations

import sys

import click

from magsync.cli.runner import (
    app_of,
    fail,
    output,
    read_state_file,
    report_output,
    run_monitor,
    run_writing,
)
from magsync.errors import EXIT_CONFIG, EXIT_OK

dead_list = click.option("--dead", is_flag=True, help="Dead contacts instead of queued ones.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group("queue", invoke_without_command=True)
@dead_list
@json_option
@click.pass_context
def queue_group(ctx: click.Context, dead: bool, as_json: bool) -> int | None:
    """Show, retry or purge the failsafe queue (alone: `queue list`)."""
    if ctx.invoked_subcommand is None:
        return ctx.invoke(queue_list, dead=dead, as_json=as_json)
    if dead or as_json:  # `queue --dead purge` must not purge the whole queue
        raise click.UsageError(f"--dead and --json go after the subcommand, e.g. `magsync "
                               f"queue {ctx.invoked_subcommand} --dead`")
    return None


@queue_group.command("list")
@dead_list
@json_option
@click.pass_context
def queue_list(ctx: click.Context, dead: bool, as_json: bool) -> int:
    """Show the queued contacts: key, email, attempts, last error, queued since."""
    from magsync.ops.queue import list_queue

    app = app_of(ctx)
    headers, rows = read_state_file(app.state_path(),
                                    lambda store: list_queue(store, dead=dead))
    out = report_output(app)
    if as_json:
        keys = ["key", "email", "attempts", "last_error", "queued_since"]
        out.json({"dead": dead, "contacts": [
            {**dict(zip(keys, row, strict=True)), "attempts": int(row[2])} for row in rows]})
    elif rows:
        out.table(headers, rows)
    else:
        out.line("no dead contacts" if dead else "the failsafe queue is empty")
    return EXIT_OK


@queue_group.command("retry")
@click.option("--dead", is_flag=True, help="Revive dead contacts (attempts reset) too.")
@click.pass_context
def queue_retry(ctx: click.Context, dead: bool) -> int:
    """Drain the queue now, as sync-background would (each contact re-read from Magento)."""
    from magsync.sync.queue import retry_queue

    return run_writing(app_of(ctx), "queue retry",
                       lambda cfg, store, hook: retry_queue(cfg, store, dead=dead, progress=hook))


@queue_group.command("purge")
@click.option("--dead", is_flag=True, help="Only the dead contacts.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def queue_purge(ctx: click.Context, dead: bool, yes: bool) -> int:
    """Empty the queue (asks unless --yes)."""
    from magsync.ops.queue import purge_queue

    app = app_of(ctx)
    what = "dead contacts" if dead else "the whole failsafe queue"
    if not yes and not sys.stdin.isatty():
        fail(EXIT_CONFIG, f"queue purge would remove {what}: pass --yes to confirm "
                          "(no terminal to ask on)")
    if not yes and not click.confirm(f"Remove {what}?", default=False):
        fail(EXIT_CONFIG, "nothing purged (pass --yes to skip the question)")
    monitor = run_monitor(app.config(), "queue purge")  # the metrics' queue depth
    with app.writing("queue purge") as store:
        monitor.started()
        purged = purge_queue(store, dead=dead)
        monitor.counts = {"removed": purged}
        monitor.observe(store)
    monitor.finish(EXIT_OK)
    output(app).line(f"purged {purged} contact(s)")
    return EXIT_OK


COMMANDS = [queue_group]
