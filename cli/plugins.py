"""`pm-plugins install | upgrade | uninstall | list | search | info | update`: what is
installed, and what the registries offer."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from packaging.version import InvalidVersion, Version

from cli.common import Context, emit, pass_ctx, refusals
from cli.render import may, table
from loader.capabilities import Capabilities
from loader.host_modules import plan_for_host
from loader.journal import reading
from loader.lockfile import read_lock
from loader.plugins_json import read_plugins_json
from registry_client.consent import Ask, Widening, ask_consent
from registry_client.default_index import ensure_default_registry
from registry_client.installer import (
    InstallResult,
    install_many,
    read_package,
    uninstall,
)
from registry_client.reading import installed_capabilities
from registry_client.registry_install import (
    BarFactory,
    Chosen,
    choose,
    index_capabilities,
    install_from_index,
    open_clients,
)
from registry_client.resolve import parse_request
from registry_client.tuf_client import RegistryClient, Release


def _progress(line: str) -> None:
    click.echo(line, err=True)


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


_ALLOW_HELP = "Allow releases that ask for more capabilities than the installed version."


def _clients(ctx: Context) -> list[RegistryClient]:
    """The configured registries, refreshed; the embedded default one on first use."""
    ensure_default_registry(ctx.home, _progress)
    return open_clients(ctx.home, _progress)


@click.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--pre", is_flag=True, help="Consider pre-releases.")
@click.option("--allow-capabilities", is_flag=True, help=_ALLOW_HELP)
@pass_ctx
def install(ctx: Context, targets: tuple[str, ...], pre: bool, allow_capabilities: bool) -> None:
    """Install plugins: NAME[SPEC] from the registry (e.g. hosts, "hosts>=1,<2"), or
    ./PATH of a package directory (in dev mode also a plugin source directory)."""
    paths = [t for t in targets if "/" in t or t.startswith(".")]  # ./hosts, not hosts
    if paths and len(paths) != len(targets):
        raise click.ClickException("install either names from the registry or paths, not both")
    with refusals():
        if paths:
            releases = [
                read_package(
                    Path(t), trust=ctx.trust(), dev_mode=ctx.dev_mode(), threshold=ctx.threshold()
                )
                for t in paths
            ]
            consent = ask_consent(ctx.home, releases, allow=allow_capabilities, ask=_asker())
            results = install_many(ctx.home, releases, consent=consent)
        else:
            for target in targets:  # a malformed request fails before any network
                parse_request(target)
            clients = _clients(ctx)
            chosen = choose(ctx.home, targets, clients, pre=pre)
            if not chosen:
                click.echo("nothing to do: the requested plugins are installed")
                _note_refused(ctx, [parse_request(t)[0] for t in targets])
                return
            results = _fetch_and_install(ctx, chosen, clients, allow_capabilities)
    _report_installs(results)


def _fetch_and_install(
    ctx: Context, chosen: list[Chosen], clients: list[RegistryClient], allow: bool
) -> list[InstallResult]:
    """Download the chosen releases through TUF, verify them as the loader will (trust store
    and signature threshold), ask for consent to wider capabilities, and install them as one
    change."""
    return install_from_index(
        ctx.home,
        chosen,
        clients,
        trust=ctx.trust(),
        progress=_progress,
        bar=_download_bar(),
        threshold=ctx.threshold(),
        allow_capabilities=allow,
        ask=_asker(),
    )


def _note_refused(ctx: Context, names: list[str]) -> None:
    """Installed is not runnable: say so when the loader would refuse one of `names`."""
    with reading(ctx.home):
        plan = plan_for_host(
            ctx.home,
            trust=ctx.trust(),
            dev_mode=ctx.dev_mode(),
            threshold=ctx.threshold(),
            lock=read_lock(ctx.home.lock_file),
        )
    for row in plan.plugins:
        if row.name in names and not row.runs:
            click.echo(f"note: {row.name} is installed but the loader refuses it: {row.reason}")


def _report_installs(results: list[InstallResult]) -> None:
    for result in results:
        how = f"signed by {result.signed_by}" if result.key_id else result.signed_by
        verb = "already installed" if result.unchanged else "installed"
        if result.replaced:
            verb = f"upgraded from {result.replaced}"
        click.echo(f"{result.name} {result.version}: {verb}, {how}")
        click.echo("\n".join(may(result.capabilities)))
        for name in result.missing:
            click.echo(f"  note: {result.name} needs plugin {name}, which is not installed")


@click.command()
@click.argument("names", nargs=-1)
@click.option("--pre", is_flag=True, help="Consider pre-releases.")
@click.option("--allow-capabilities", is_flag=True, help=_ALLOW_HELP)
@pass_ctx
def upgrade(ctx: Context, names: tuple[str, ...], pre: bool, allow_capabilities: bool) -> None:
    """Upgrade NAMEs (default: every installed plugin) to their newest fitting releases."""
    with refusals():
        installed = read_lock(ctx.home.lock_file)
        unknown = [n for n in names if n not in installed]
        if unknown:
            raise click.ClickException(f"plugin {unknown[0]} is not installed")
        wanted = list(names) or sorted(installed)
        if not wanted:
            click.echo("no plugins installed")
            return
        clients = _clients(ctx)
        if not names:  # every installed plugin that some registry has
            local = [n for n in wanted if not any(c.find(n) for c in clients)]
            for name in local:
                _progress(f"skipping {name}: it is in no configured registry")
            wanted = [n for n in wanted if n not in local]
        chosen = choose(ctx.home, wanted, clients, pre=pre, upgrade=True)
        if not chosen:
            click.echo("everything is up to date")
            _note_refused(ctx, wanted)
            return
        results = _fetch_and_install(ctx, chosen, clients, allow_capabilities)
    _report_installs(results)


@click.command()
@pass_ctx
def update(ctx: Context) -> None:
    """Refresh the TUF metadata of every registry."""
    with refusals():
        _clients(ctx)


@click.command()
@click.argument("text", default="")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def search(ctx: Context, text: str, as_json: bool) -> None:
    """Plugins in the index whose name or description contains TEXT."""
    with refusals():
        found = []
        for client in _clients(ctx):
            for release in client.releases():
                haystack = f"{release.name} {release.description}".lower()
                if text.lower() in haystack:
                    found.append((client.name, release))
    newest: dict[str, tuple[str, Release]] = {}
    for registry, release in found:
        seen = newest.get(release.name)
        if seen is None or _version(release.version) > _version(seen[1].version):
            newest[release.name] = (registry, release)
    data: list[dict[str, Any]] = [
        {
            "name": r.name,
            "version": r.version,
            "types": list(r.types),
            "description": r.description,
            "registry": reg,
        }
        for reg, r in sorted(newest.values(), key=lambda x: x[1].name)
    ]
    rows = [[d["name"], d["version"], ",".join(d["types"]), d["description"]] for d in data]
    emit(
        data,
        as_json,
        table(["NAME", "VERSION", "TYPES", "DESCRIPTION"], rows) if rows else "no plugin found",
    )


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def info(ctx: Context, name: str, as_json: bool) -> None:
    """Everything the index says about plugin NAME (every release), what its newest release
    may do (from its signed manifest), and the installed release, if any."""
    with refusals():
        found: list[tuple[RegistryClient, Release]] = []
        for client in _clients(ctx):
            found = [(client, r) for r in client.find(name)]
            if found:
                break
        if not found:
            raise click.ClickException(f"no plugin named {name} is in any configured registry")
        found.sort(key=lambda x: _version(x[1].version), reverse=True)
        newest = index_capabilities(*found[0])
        installed = _installed(ctx, name)
    data = [_release_json(client.name, r) for client, r in found]
    data[0]["capabilities"] = newest.to_json() if newest else None
    for entry in data:
        entry["installed"] = installed is not None and entry["version"] == installed[0]
        if entry["installed"] and installed is not None:
            entry["capabilities"] = installed[1].to_json() if installed[1] else None
    emit(data, as_json, "\n".join(_info_lines(data, newest, installed)))


def _release_json(registry: str, r: Release) -> dict[str, Any]:
    """One release in `info --json`; `capabilities` is read for the newest and the
    installed release only (null for the others: their manifests are not downloaded)."""
    return {
        "name": r.name,
        "version": r.version,
        "platform": r.platform,
        "types": list(r.types),
        "requires": r.requires,
        "description": r.description,
        "publisher": r.publisher,
        "publisher_key_id": r.publisher_key_id,
        "size": r.artifact.length,
        "sha256": r.artifact.sha256,
        "registry": registry,
        "capabilities": None,
    }


def _installed(ctx: Context, name: str) -> tuple[str, Capabilities | None] | None:
    """The installed version of `name` and what it declares (None: an unsigned dev build,
    which declares nothing signed); None when it is not installed."""
    with reading(ctx.home):
        locked = read_lock(ctx.home.lock_file).get(name)
        if locked is None:
            return None
        if locked.signer is None:
            return locked.version, None
        return locked.version, installed_capabilities(ctx.home, name, locked.version)


def _info_lines(
    data: list[dict[str, Any]],
    newest: Capabilities | None,
    installed: tuple[str, Capabilities | None] | None,
) -> list[str]:
    top = data[0]
    lines = [
        f"{top['name']}: {top['description']}",
        f"publisher: {top['publisher']} (key {top['publisher_key_id'][:12]}...)",
        f"types: {', '.join(top['types'])}",
        f"requires: host {', '.join(top['requires']['host']) or '-'}; plugins "
        + (", ".join(f"{k}{v}" for k, v in top["requires"]["plugins"].items()) or "-"),
    ]
    if newest is None:
        lines.append(f"newest release {top['version']}: its manifest cannot be read")
    else:
        lines += [f"newest release {top['version']}:", *may(newest)]
    if installed is not None:
        version, caps = installed
        if version == top["version"]:
            lines.append(f"installed: {version} (the newest)")
        elif caps is None:
            lines.append(f"installed: {version} (unsigned: it declares no capabilities)")
        else:
            lines += [f"installed: {version}", *may(caps)]
    lines.append("releases: " + ", ".join(f"{d['version']} ({d['platform']})" for d in data))
    return lines


@click.command("uninstall")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove even if other plugins need it.")
@pass_ctx
def uninstall_cmd(ctx: Context, name: str, force: bool) -> None:
    """Remove plugin NAME (refused while another installed plugin needs it)."""
    with refusals():
        version = uninstall(ctx.home, name, force=force)
    click.echo(f"uninstalled {name} {version}")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """Installed plugins: what plugins.json configures and what the lock records."""
    with refusals():
        entries = read_plugins_json(ctx.home.plugins_json)
        locked = read_lock(ctx.home.lock_file)
    data: list[dict[str, Any]] = [
        {
            "name": e.name,
            "version": e.version or (locked[e.name].version if e.name in locked else None),
            "types": list(e.types),
            "enabled": e.enabled,
            "privileged": e.privileged,
            "signer": locked[e.name].signer if e.name in locked else None,
        }
        for e in entries
    ]
    rows = [
        [
            d["name"],
            d["version"] or "-",
            ",".join(d["types"]),
            "yes" if d["enabled"] else "no",
            (d["signer"] or "unsigned")[:12],
        ]
        for d in data
    ]
    emit(
        data,
        as_json,
        table(["NAME", "VERSION", "TYPES", "ENABLED", "SIGNER"], rows)
        if rows
        else "no plugins installed",
    )
