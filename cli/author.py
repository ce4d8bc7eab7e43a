"""`pm-plugins new | dev`: the plugin author's commands (write a working plugin folder; run
a source folder in the booted host and restart it on every change).

Thin over pm_plugin.scaffold (the files) and registry_client/host control (the dev loop);
the name rules are the installer's, so `new` never writes a plugin `install` would refuse.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import Context, pass_ctx
from loader.fields import is_identifier
from loader.host_modules import CORE_MODULES
from pm_plugin.scaffold import TYPES, write_plugin


def check_plugin_name(name: str) -> None:
    """Refuse, in one sentence, a name the installer would refuse."""
    if not is_identifier(name):
        raise click.ClickException(
            f"{name!r} is not a plugin name (1-64 of a-z, 0-9, _ and -, starting with a "
            f"letter or digit)"
        )
    if name in CORE_MODULES:
        raise click.ClickException(
            f"{name} is the name of a host module, which no plugin may take; choose another name"
        )


@click.command()
@click.argument("name")
@click.option("--type", "type_", type=click.Choice(TYPES), required=True, help="What it does.")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where to write it (default: ./NAME).",
)  # fmt: skip
@click.option("--publisher", default="me", help="The publisher named in plugin.toml.")
@pass_ctx
def new(ctx: Context, name: str, type_: str, directory: Path | None, publisher: str) -> None:
    """Write a working TYPE plugin called NAME: plugin.toml, the executable, a test using
    pm_plugin.testing and a README; it packages, installs in dev mode and passes its test
    as written."""
    check_plugin_name(name)
    target = directory or Path(name)
    try:
        written = write_plugin(target, name, type_, publisher=publisher)
    except (OSError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: python -m pytest {target}   then   pm-plugins --dev-mode install {target}")
