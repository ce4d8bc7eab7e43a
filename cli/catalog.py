"""`pm-plugins search | info`: what the registries offer, and what of it is installed.

A yanked release is shown by `info` with its reason and is never the "newest" of `search` or
`info` while the plugin has a release that is not yanked."""

from __future__ import annotations

from typing import Any

import click

from cli.common import Context, emit, pass_ctx, refusals, registry_clients
from cli.render import may, table
from loader.capabilities import Capabilities
from loader.journal import reading
from loader.lockfile import read_lock
from registry_client.reading import installed_capabilities
from registry_client.registry_install import index_manifest
from registry_client.search import newest_matching, rank
from registry_client.tuf_client import RegistryClient, Release


@click.command()
@click.argument("text", default="")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def search(ctx: Context, text: str, as_json: bool) -> None:
    """Plugins in the index whose name or description contains TEXT."""
    with refusals():
        found = newest_matching(registry_clients(ctx, cached_ok=True), text)
    data: list[dict[str, Any]] = [
        {
            "name": r.name,
            "version": r.version,
            "types": list(r.types),
            "description": r.description,
            "registry": reg,
        }
        for reg, r in found
    ]
    rows = [[d["name"], d["version"], ",".join(d["types"]), d["description"]] for d in data]
    emit(
        data,
        as_json,
        table(["NAME", "VERSION", "TYPES", "DESCRIPTION"], rows) if rows else "no plugin found",
    )


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def info(ctx: Context, name: str, as_json: bool) -> None:
    """Everything the index says about plugin NAME (every release), what its newest release
    may do (from its signed manifest), and the installed release, if any."""
    with refusals():
        found: list[tuple[RegistryClient, Release]] = []
        for client in registry_clients(ctx, cached_ok=True):
            found = [(client, r) for r in client.find(name)]
            if found:
                break
        if not found:
            raise click.ClickException(f"no plugin named {name} is in any configured registry")
        found.sort(key=lambda x: rank(x[1]), reverse=True)
        trust = ctx.trust()
        facts = index_manifest(*found[0], trust)
        newest = facts.capabilities if facts else None
        installed = _installed(ctx, name)
    data = [_release_json(client.name, r) for client, r in found]
    data[0]["capabilities"] = newest.to_json() if newest else None
    data[0]["signed_by"] = [
        {"key_id": k, "level": trust.level_of(k)} for k in (facts.signers if facts else ())
    ]
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
        "publisher_key_id": r.publisher_key_id,  # what the index claims, not verified
        "signed_by": None,  # keys you trust that verified its manifest: newest release only
        "size": r.artifact.length,
        "sha256": r.artifact.sha256,
        "registry": registry,
        "capabilities": None,
        "yanked": r.yanked,
        "yanked_reason": r.yanked_reason,
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


def _signed_by(signers: list[dict[str, Any]]) -> str:
    """Only keys that verified: the index's claim of a publisher key is not shown."""
    if not signers:
        return "no key you trust (installing it would be refused)"
    return ", ".join(f"{s['key_id'][:12]}... ({s['level']})" for s in signers)


def _listed(entry: dict[str, Any]) -> str:
    """`1.2.0 (any)`, or `1.2.0 (any) (yanked: reason)`."""
    text = f"{entry['version']} ({entry['platform']})"
    if entry["yanked"]:
        text += f" (yanked: {entry['yanked_reason'] or 'no reason given'})"
    return text


def _info_lines(
    data: list[dict[str, Any]],
    newest: Capabilities | None,
    installed: tuple[str, Capabilities | None] | None,
) -> list[str]:
    top = data[0]
    lines = [
        f"{top['name']}: {top['description']}",
        f"publisher: {top['publisher']}",
        f"newest release signed by: {_signed_by(top['signed_by'])}",
        f"types: {', '.join(top['types'])}",
        f"requires: host {', '.join(top['requires']['host']) or '-'}; plugins "
        + (", ".join(f"{k}{v}" for k, v in top["requires"]["plugins"].items()) or "-"),
    ]
    if top["yanked"]:
        lines.append(f"every release is yanked; newest: {_listed(top)}")
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
    lines.append("releases: " + ", ".join(_listed(d) for d in data))
    return lines
