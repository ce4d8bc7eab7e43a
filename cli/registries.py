"""`pm-plugins registry add | list | remove`: the registries plugins are installed from."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import Context, emit, pass_ctx, refusals
from cli.render import table
from registry_client import registries


@click.group()
def registry() -> None:
    """The registries plugins are installed from."""


@registry.command("add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--root",
    "root",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The registry's root.json, obtained out of band: the trust anchor.",
)
@pass_ctx
def registry_add(ctx: Context, name: str, url: str, root: Path) -> None:
    """Trust registry NAME at URL (http(s)://, file:// or a folder) from its ROOT."""
    with refusals():
        registries.add_registry(ctx.home, name, url, root)
    click.echo(f"registry {name} added: {url}")


@registry.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def registry_list(ctx: Context, as_json: bool) -> None:
    """The configured registries, in lookup order."""
    with refusals():
        configured = registries.read_registries(ctx.home)
    data = [{"name": r.name, "url": r.url} for r in configured]
    rows = [[r.name, r.url] for r in configured]
    emit(data, as_json, table(["NAME", "URL"], rows) if rows else "no registries configured")


@registry.command("remove")
@click.argument("name")
@pass_ctx
def registry_remove(ctx: Context, name: str) -> None:
    """Forget registry NAME and its cached metadata (installed plugins stay)."""
    with refusals():
        registries.remove_registry(ctx.home, name)
    click.echo(f"registry {name} removed")
