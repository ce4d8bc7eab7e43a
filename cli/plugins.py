"""`pm-plugins install | upgrade | uninstall | list | update`: what is installed, and
changing it (what the registries offer is cli.catalog)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from cli.common import Context, emit, pass_ctx, progress, refusals, registry_clients
from cli.render import table
from host.control import running_versions
from loader.host_modules import plan_for_host
from loader.journal import reading
from loader.lockfile import GRANTS, read_lock
from loader.plugins_json import read_plugins_json
from registry_client.consent import Ask, Widening, ask_consent
from registry_client.grants import set_grant
from registry_client.installer import (
    InstallResult,
    Release,
    install_many,
    read_package,
    uninstall,
)
from registry_client.plugin_config import purge as purge_plugin
from registry_client.registry_install import (
    BarFactory,
    Chosen,
    choose,
    install_from_index,
)
from registry_client.replacing import Replacing
from registry_client.reports import install_report
from registry_client.resolve import parse_request
from registry_client.restore import check_locked, locked_to_restore, releases_for
from registry_client.tuf_client import RegistryClient


@contextlib.contextmanager
def _bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A download progress bar on stderr (used only when stderr is a terminal)."""
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _download_bar() -> BarFactory | None:
    return _bar if sys.stderr.isatty() else None


def _allow(widening: Widening) -> bool:
    """The question for a release that asks for more than the installed version."""
    return click.confirm(widening.question(), default=False, err=True)


def _asker() -> Ask | None:
    """Ask the person at the terminal; with no terminal, the library refuses instead."""
    return _allow if sys.stdin.isatty() else None


def _replacing(downgrade: bool, new_signer: bool) -> Replacing:
    """The flags, and the terminal's question about a new signer (none without a terminal)."""
    ask = (
        (lambda c: click.confirm(c.question(), default=False, err=True))
        if sys.stdin.isatty()
        else None
    )
    return Replacing(downgrade, new_signer, ask)


_ALLOW_HELP = "Allow releases that ask for more capabilities than the installed version."
_SIGNER_HELP = "Allow a release signed by none of the keys that signed the installed one."
_DOWNGRADE_HELP = "Allow installing a release older than the installed one."
_LOCKED_HELP = "Install exactly what plugins.lock records (a new machine), checking each."


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--pre", is_flag=True, help="Consider pre-releases.")
@click.option("--allow-capabilities", is_flag=True, help=_ALLOW_HELP)
@click.option("--allow-downgrade", is_flag=True, help=_DOWNGRADE_HELP)
@click.option("--allow-new-signer", is_flag=True, help=_SIGNER_HELP)
@click.option("--locked", is_flag=True, help=_LOCKED_HELP)
@click.option("--registry", "registry", metavar="NAME", help="Take releases from NAME only.")
@pass_ctx
def install(
    ctx: Context,
    targets: tuple[str, ...],
    pre: bool,
    allow_capabilities: bool,
    allow_downgrade: bool,
    allow_new_signer: bool,
    locked: bool,
    registry: str | None,
) -> None:
    """Install plugins: NAME[SPEC] from the registry (e.g. hosts, "hosts>=1,<2"), or
    ./PATH of a package directory (in dev mode also a plugin source directory), or with
    --locked exactly the releases plugins.lock records that are not on disk."""
    if locked or not targets:
        if not locked or targets:
            raise click.UsageError("name plugins to install, or pass --locked alone")
        _install_locked(ctx)
        return
    paths = [t for t in targets if "/" in t or t.startswith(".")]  # ./hosts, not hosts
    if paths and len(paths) != len(targets):
        raise click.ClickException("install either names from the registry or paths, not both")
    replacing = _replacing(allow_downgrade, allow_new_signer)
    with refusals():
        if paths:
            releases = [
                read_package(
                    Path(t), trust=ctx.trust(), dev_mode=ctx.dev_mode(), threshold=ctx.threshold()
                )
                for t in paths
            ]
            allowed = replacing.ask_about(ctx.home, releases)
            consent = ask_consent(ctx.home, releases, allow=allow_capabilities, ask=_asker())
            results = install_many(ctx.home, releases, consent=consent, allowed=allowed)
        else:
            for target in targets:  # a malformed request fails before any network
                parse_request(target)
            clients = registry_clients(ctx)
            chosen = choose(ctx.home, targets, clients, pre=pre, registry=registry)
            if not chosen:
                click.echo("nothing to do: the requested plugins are installed")
                _note_refused(ctx, [parse_request(t)[0] for t in targets])
                return
            results = _fetch_and_install(ctx, chosen, clients, allow_capabilities, replacing)
    _report_installs(ctx, results)


def _install_locked(ctx: Context) -> None:
    """Restore plugins.lock's releases (registry_client.restore), each checked against it."""
    with refusals():
        wanted = locked_to_restore(ctx.home)
        if not wanted:
            click.echo("nothing to do: every release plugins.lock records is installed")
            return
        clients = registry_clients(ctx)
        chosen = releases_for(wanted, clients)
        results = _fetch_and_install(ctx, chosen, clients, check=check_locked(wanted))
    _report_installs(ctx, results)


def _fetch_and_install(
    ctx: Context,
    chosen: list[Chosen],
    clients: list[RegistryClient],
    allow: bool = False,
    replacing: Replacing | None = None,
    check: Callable[[Release], None] | None = None,
) -> list[InstallResult]:
    """Download the chosen releases through TUF, verify them as the loader will (trust store
    and signature threshold), ask for consent to wider capabilities and new signers, and
    install them as one change (each release passing `check` too)."""
    return install_from_index(
        ctx.home,
        chosen,
        clients,
        trust=ctx.trust(),
        progress=progress,
        bar=_download_bar(),
        threshold=ctx.threshold(),
        allow_capabilities=allow,
        ask=_asker(),
        replacing=replacing,
        check=check,
    )


def _note_refused(ctx: Context, names: list[str]) -> None:
    """Installed is not runnable: say so when the loader would refuse one of `names`."""
    with reading(ctx.home):
        plan = plan_for_host(
            ctx.home,
            trust=ctx.trust(),
            dev_mode=ctx.dev_mode(),
            threshold=ctx.threshold(),
        )
    for row in plan.plugins:
        if row.name in names and not row.runs:
            click.echo(f"note: {row.name} is installed but the loader refuses it: {row.reason}")


def _report_installs(ctx: Context, results: list[InstallResult]) -> None:
    for line in install_report(results, _running_versions(ctx)):
        click.echo(line)


def _running_versions(ctx: Context) -> dict[str, str] | None:
    """The plugin versions a booted host of this state root runs (None: no host answers)."""
    if not ctx.home.control_socket.exists():
        return None
    return running_versions(ctx.home.control_socket)


@click.command()
@click.argument("names", nargs=-1)
@click.option("--pre", is_flag=True, help="Consider pre-releases.")
@click.option("--allow-capabilities", is_flag=True, help=_ALLOW_HELP)
@click.option("--allow-new-signer", is_flag=True, help=_SIGNER_HELP)
@pass_ctx
def upgrade(
    ctx: Context,
    names: tuple[str, ...],
    pre: bool,
    allow_capabilities: bool,
    allow_new_signer: bool,
) -> None:
    """Upgrade NAMEs (default: every installed plugin) to their newest fitting releases;
    never to an older one."""
    with refusals():
        installed = read_lock(ctx.home.lock_file)
        unknown = [n for n in names if n not in installed]
        if unknown:
            raise click.ClickException(f"plugin {unknown[0]} is not installed")
        wanted = list(names) or sorted(installed)
        if not wanted:
            click.echo("no plugins installed")
            return
        clients = registry_clients(ctx)
        if not names:  # every installed plugin that some registry has
            local = [n for n in wanted if not any(c.find(n) for c in clients)]
            for name in local:
                progress(f"skipping {name}: it is in no configured registry")
            wanted = [n for n in wanted if n not in local]
        chosen = choose(ctx.home, wanted, clients, pre=pre, upgrade=True, note=progress)
        if not chosen:
            click.echo("everything is up to date")
            _note_refused(ctx, wanted)
            return
        replacing = _replacing(False, allow_new_signer)
        results = _fetch_and_install(ctx, chosen, clients, allow_capabilities, replacing)
    _report_installs(ctx, results)


@click.command()
@pass_ctx
def update(ctx: Context) -> None:
    """Refresh the TUF metadata of every registry."""
    with refusals():
        registry_clients(ctx)


@click.command("uninstall")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove even if other plugins need it.")
@click.option("--purge", is_flag=True, help="Also forget its config values and data folder.")
@pass_ctx
def uninstall_cmd(ctx: Context, name: str, force: bool, purge: bool) -> None:
    """Remove plugin NAME (refused while another installed plugin needs it). Its config
    values and data folder are kept for a reinstall unless --purge."""
    with refusals():
        version = uninstall(ctx.home, name, force=force)
    click.echo(f"uninstalled {name} {version}")
    with refusals():  # after the uninstall, said first, so a failed purge loses no news
        removed = purge_plugin(ctx.home, name) if purge else []
    for what in removed:
        click.echo(f"removed {what}")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """Installed plugins: what plugins.json configures, what the lock records, and whether
    the loader would run it (missing, refused and why)."""
    with refusals(), reading(ctx.home):
        entries = read_plugins_json(ctx.home.plugins_json)
        locked = read_lock(ctx.home.lock_file)
        plan = plan_for_host(
            ctx.home, trust=ctx.trust(), dev_mode=ctx.dev_mode(), threshold=ctx.threshold()
        )
    rows_by_name = {r.name: r for r in plan.plugins}
    data: list[dict[str, Any]] = []
    for e in entries:
        lock = locked.get(e.name)
        row = rows_by_name.get(e.name)
        data.append(
            {
                "name": e.name,
                "version": e.version or (lock.version if lock else None),
                "types": list(e.types),
                "enabled": e.enabled,
                "privileged": e.privileged,
                "signer": lock.signer if lock else None,
                "signers": list(lock.signers) if lock else [],
                "registry": lock.registry if lock else None,
                "grants": list(lock.grants) if lock else [],
                "status": row.status.value if row else "refused",
                "runs": bool(row and row.runs),
                "reason": (row.reason if row else plan.error) or "",
            }
        )
    rows = [
        [
            d["name"],
            d["version"] or "-",
            ",".join(d["types"]),
            "yes" if d["enabled"] else "no",
            (d["signer"] or "unsigned")[:12],
            d["status"] if d["runs"] else f"{d['status']}: {d['reason']}",
        ]
        for d in data
    ]
    head = ["NAME", "VERSION", "TYPES", "ENABLED", "SIGNER", "STATUS"]
    emit(data, as_json, table(head, rows) if rows else "no plugins installed")


@click.command()
@click.argument("name")
@click.argument("what", type=click.Choice(GRANTS))
@click.option("--revoke", is_flag=True, help="Take the grant back.")
@pass_ctx
def grant(ctx: Context, name: str, what: str, revoke: bool) -> None:
    """Grant installed plugin NAME what its signers do not earn it: `privileged` (the
    plugin manager) for a plugin not signed by an official key. Bound to the keys that
    signed the installed release."""
    with refusals():
        locked = set_grant(ctx.home, name, what, granted=not revoke)
    signers = ", ".join(k[:12] + "..." for k in locked.signers) or "no key (unsigned)"
    done = "no longer granted" if revoke else "granted"
    click.echo(f"{name} {locked.version}: {what} {done} (while signed by {signers})")
