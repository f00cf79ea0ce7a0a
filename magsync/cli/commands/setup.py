"""Getting started: ``init``, ``crontab``, ``demo`` and ``sandbox serve``."""

from __future__ import annotations

from pathlib import Path

import click

from magsync.cli.runner import app_of, output


@click.command()
@click.argument("path", required=False, default="magsync.yaml", metavar="[PATH]",
                type=click.Path(dir_okay=True, path_type=Path))
@click.pass_context
def init(ctx: click.Context, path: Path) -> None:
    """Write the commented example config (every key with its default) to PATH.

    PATH defaults to ./magsync.yaml; the file is created with mode 0600 (it is meant to
    hold secrets or ${VAR} references to them), and an existing file is never overwritten.
    """
    from magsync.ops.init import write_example_config

    written = write_example_config(path)
    output(app_of(ctx)).line(
        f"wrote {written} (mode 600). Next: fill in magento.base_url and the credentials "
        f"(set the ${{VAR}} environment variables it names), then `magsync --config "
        f"{written} check`.")


@click.command()
@click.pass_context
def crontab(ctx: click.Context) -> None:
    """Print the crontab lines that fit the config."""
    from magsync.ops.crontab import render_crontab

    cfg = app_of(ctx).config()
    assert cfg.source is not None  # App.config() always loads a file
    click.echo(render_crontab(cfg, cfg.source), nl=False)


@click.command()
@click.pass_context
def demo(ctx: click.Context) -> int:
    """The whole sync against the built-in sandbox: no network, no config."""
    from magsync.ops.demo import run_demo

    run_cli = app_of(ctx).run_cli
    assert run_cli is not None
    return run_demo(click.echo, run_cli)


@click.group()
def sandbox() -> None:
    """The built-in simulators of Magento and Emarsys, for trying a mapping safely."""


@sandbox.command("serve")
@click.option("--customers", type=click.IntRange(min=0), default=200, show_default=True,
              help="Customers in the seeded shop.")
@click.option("--subscribers", type=click.IntRange(min=0), default=120, show_default=True,
              help="Newsletter subscribers in the seeded shop.")
@click.option("--port-magento", type=click.IntRange(0, 65535), default=0,
              help="Port of the Magento simulator (default: a free one).")
@click.option("--port-emarsys", type=click.IntRange(0, 65535), default=0,
              help="Port of the Emarsys simulator (default: a free one).")
@click.option("--write-config", "write_config", metavar="PATH",
              help="Also write the ready-to-use config to PATH (mode 0600; its state file "
                   "beside it, named PATH's stem + .sandbox-state.db).")
@click.option("--force", is_flag=True, help="Let --write-config replace an existing file.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shop generator seed.")
@click.pass_context
def sandbox_serve(ctx: click.Context, customers: int, subscribers: int, port_magento: int,
                  port_emarsys: int, write_config: str | None, force: bool, seed: int
                  ) -> None:
    """Run both simulators in the foreground and print a config for them (Ctrl-C stops)."""
    from magsync.sandbox.serve import serve

    serve(customers=customers, subscribers=subscribers, port_magento=port_magento,
          port_emarsys=port_emarsys, write_config=write_config, force=force, seed=seed,
          quiet=app_of(ctx).quiet)


COMMANDS = [init, crontab, demo, sandbox]
