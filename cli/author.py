"""`pm-plugins new | dev`: the plugin author's commands (write a working plugin folder; run
a source folder in the booted dev-mode host and run it again on every change).

Thin over pm_plugin.scaffold (the files) and registry_client/host control (the dev loop);
the name rules are the installer's, so `new` never writes a plugin `install` would refuse.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import click

from cli.common import Context, pass_ctx, refusals
from host.control import request
from loader.fields import is_identifier
from loader.host_modules import CORE_MODULES
from pm_plugin.scaffold import TYPES, write_plugin
from registry_client.consent import ask_consent
from registry_client.installer import install_many, read_package


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


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What a change of the source folder changes: every file's path, size and mtime."""
    skip = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "dist"}
    seen = []
    for path in sorted(directory.rglob("*")):
        if skip.intersection(path.relative_to(directory).parts):
            continue
        try:
            info = path.stat()
        except OSError:  # an editor's temp file, gone between the listing and the look
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        seen.append((str(path.relative_to(directory)), info.st_size, info.st_mtime_ns))
    return tuple(seen)


def _dev_round(ctx: Context, directory: Path, round_: int) -> str:
    """Install the folder unsigned, have the booted host run it again; one line on how."""
    try:
        with refusals():
            release = read_package(
                directory, trust=ctx.trust(), dev_mode=True, threshold=ctx.threshold()
            )
            consent = ask_consent(ctx.home, [release], allow=True, ask=None)
            install_many(ctx.home, [release], consent=consent)
            said = request(ctx.home.control_socket, "reload", module=release.name)
    except click.ClickException as err:
        return f"[{round_}] not running: {err.message}"
    state, reason = said["state"], said["reason"]
    tail = f": {reason}" if reason and state != "running" else ""
    return f"[{round_}] {release.name} {release.version} (dev build): {state}{tail}"


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--once", is_flag=True, help="Install and restart it once, then exit.")
@click.option(
    "--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
    help="Seconds between looks at the folder.",
)  # fmt: skip
@pass_ctx
def dev(ctx: Context, directory: Path, once: bool, interval: float) -> None:
    """Run the plugin source in DIRECTORY in the booted dev-mode host, unsigned, and run it
    again on every change of its files, until Ctrl-C."""
    with refusals():
        status = request(ctx.home.control_socket, "status")
    if not status.get("dev_mode"):
        raise click.ClickException(
            "the booted host is not in dev mode, so it would refuse an unsigned build; "
            "start it with `pm-plugins --dev-mode boot`"
        )
    round_, seen = 1, _fingerprint(directory)
    said = _dev_round(ctx, directory, round_)
    click.echo(said)
    if once and not said.endswith(": running"):
        raise click.ClickException(f"{directory} does not run in the booted host")
    while not once:
        time.sleep(interval)
        now = _fingerprint(directory)
        if now != seen:
            time.sleep(0.2)  # an editor writes in steps: let it finish
            round_, seen = round_ + 1, _fingerprint(directory)
            click.echo(_dev_round(ctx, directory, round_))
