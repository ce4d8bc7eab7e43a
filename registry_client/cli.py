"""The `pm-plugins` command line: a thin layer over library calls.

Each command parses, calls the library and formats. Every `PmPluginsError`-style refusal
becomes a one-sentence `ClickException` in exactly one place (`_run`).
"""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="pm-plugins")
def cli() -> None:
    """Signed plugins for a Portmaster-like host: install, verify, boot."""


def main() -> None:
    cli()
