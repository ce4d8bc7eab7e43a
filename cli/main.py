"""The `pm-plugins` command line: a thin layer over library calls.

Each command parses its arguments, calls the library and formats the answer (a table, or
JSON with `--json`). Every refusal (ours, and the system's) becomes one sentence on stderr
and exit code 1, in one place (`cli.common.refusals`). The commands live by subject:
`cli.keys` (keys, package), `cli.plugins` (install, upgrade, list, ...), `cli.registries`
(registry add/list/remove), `cli.host` (verify, boot and questions to the booted host), and
the maintainers' `index` commands in `cli.index` (and `cli.index_releases`).
"""

from __future__ import annotations

from pathlib import Path

import click

from cli import author as cli_author
from cli import catalog
from cli import config as cli_config
from cli import dashboard as cli_dashboard
from cli import host as cli_host
from cli import keys as cli_keys
from cli import plugins as cli_plugins
from cli import registries as cli_registries
from cli.common import Context, refusals
from cli.index import index as index_group
from cli.index_keys import COMMANDS as INDEX_KEY_COMMANDS
from cli.index_push import COMMANDS as INDEX_PUSH_COMMANDS
from cli.index_releases import COMMANDS as INDEX_RELEASE_COMMANDS
from loader.home import Home
from loader.journal import roll_forward


@click.group()
@click.version_option(package_name="pm-plugins")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="State root (default: $PM_PLUGINS_HOME, else the platform's data directory).",
)
@click.option(
    "--dev-mode",
    is_flag=True,
    help="Run unsigned plugins (with a warning). Also PM_PLUGINS_DEV_MODE=1.",
)
@click.pass_context
def cli(ctx: click.Context, home: Path | None, dev_mode: bool) -> None:
    """Signed plugins for a Portmaster-like host: install, verify, boot."""
    ctx.obj = Context(Home.locate(home), dev_mode)
    # finish a change a crash interrupted; `boot` does it itself and boots the host's own
    # modules even when it cannot
    if ctx.obj.home.root.exists() and ctx.invoked_subcommand != "boot":
        with refusals():
            roll_forward(ctx.obj.home)


for _command in (
    cli_keys.keys,
    cli_keys.package,
    cli_plugins.install,
    cli_plugins.upgrade,
    cli_plugins.uninstall_cmd,
    cli_plugins.list_cmd,
    cli_plugins.grant,
    catalog.search,
    catalog.info,
    cli_plugins.update,
    cli_registries.registry,
    cli_host.verify,
    cli_host.boot,
    cli_host.status,
    cli_host.query,
    cli_host.module,
    cli_host.stop,
    cli_host.notifications,
    cli_config.config,
    cli_author.new,
    cli_author.dev,
    cli_dashboard.dashboard,
    index_group,
):
    cli.add_command(_command)


for _command in (
    *INDEX_RELEASE_COMMANDS,
    *INDEX_KEY_COMMANDS,
    *INDEX_PUSH_COMMANDS,
):  # yank, ..., status, sign
    index_group.add_command(_command)


def main() -> None:
    cli()
