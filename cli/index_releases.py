"""`pm-plugins index yank | unyank | remove | gc | publishers`: a release's life after `add`.

Why it exists apart from `cli.index`: that module holds the commands that build and publish
the index and is near the house's size limit; these withdraw and clean up releases
(:mod:`index.lifecycle`, :mod:`index.gc`) and keep the publisher keys `index add` accepts
(:mod:`index.publishers`). They are added to the `index` group by `cli.main` (`COMMANDS`).
Each prints one or two plain lines (or JSON) and turns every refusal into one sentence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from cli.index import _load_private, _passphrase, _public_key, _refusals, _repo_option
from index import IndexRepo
from index.gc import GcResult

__all__ = ["COMMANDS"]

T = TypeVar("T")


def _publisher_keys_option(f: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--publisher-key",
        "publisher_keys",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="A delegated plugin's publisher's private key, to sign their role.",
    )(f)


def _next(repo_dir: Path) -> None:
    click.echo(f"run pm-plugins index publish --repo {repo_dir} to publish")


@click.command("yank")
@_repo_option
@click.argument("name")
@click.argument("version")
@click.option("--reason", default="", help="Why, in a few words (shown to users).")
@_publisher_keys_option
def yank_cmd(
    repo_dir: Path, name: str, version: str, reason: str, publisher_keys: tuple[Path, ...]
) -> None:
    """Yank NAME VERSION: installs pinned to it (NAME==VERSION, --locked) still get it, with
    a warning; no range and no "newest" picks it."""
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        keys = [_load_private(p) for p in publisher_keys]
        changed = repo.yank(name, version, reason=reason, publisher_keys=keys)
    if not changed:
        click.echo(f"nothing to do: {name} {version} is already yanked with that reason")
        return
    click.echo(f"yanked {name} {version}" + (f" ({reason})" if reason else ""))
    _next(repo_dir)


@click.command("unyank")
@_repo_option
@click.argument("name")
@click.argument("version")
@_publisher_keys_option
def unyank_cmd(repo_dir: Path, name: str, version: str, publisher_keys: tuple[Path, ...]) -> None:
    """Take the yank off NAME VERSION."""
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        keys = [_load_private(p) for p in publisher_keys]
        changed = repo.yank(name, version, yanked=False, publisher_keys=keys)
    if not changed:
        click.echo(f"{name} {version} is not yanked")
        return
    click.echo(f"unyanked {name} {version}")
    _next(repo_dir)


@click.command("remove")
@_repo_option
@click.argument("name")
@click.argument("version")
@click.option(
    "--force",
    is_flag=True,
    help="Also a published release (a takedown: pinned installs fail; the version is retired).",
)
@_publisher_keys_option
def remove_cmd(
    repo_dir: Path, name: str, version: str, force: bool, publisher_keys: tuple[Path, ...]
) -> None:
    """Take NAME VERSION (every platform) out of the index before it is published."""
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        keys = [_load_private(p) for p in publisher_keys]
        gone = repo.remove_release(name, version, force=force, publisher_keys=keys)
    click.echo(f"removed {name} {version} ({len(gone)} target(s))")
    _next(repo_dir)


def _said_gc(result: GcResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
        return
    verb = "would delete" if result.dry_run else "deleted"
    for path in result.deleted:
        click.echo(f"{verb} {path}")
    kept = ", ".join(f"v{v}" for v in result.kept_snapshots) or "none published"
    click.echo(
        f"{verb} {len(result.deleted)} file(s), {result.bytes_freed} bytes; snapshots kept: {kept}"
    )


@click.command("gc")
@_repo_option
@click.option(
    "--grace-days",
    type=click.IntRange(0, 3650),
    default=7,
    show_default=True,
    help="Keep what snapshots superseded less than this long ago reference.",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def gc_cmd(repo_dir: Path, grace_days: int, dry_run: bool, as_json: bool) -> None:
    """Delete published metadata versions, targets and blobs no recent snapshot references
    (never a root version, never what the current timestamp reaches)."""
    with _refusals(), IndexRepo.open(repo_dir) as repo:
        result = repo.gc(grace_days=grace_days, dry_run=dry_run)
    _said_gc(result, as_json)


@click.group("publishers")
def publishers() -> None:
    """The publisher keys `index add` accepts for plugins not delegated to a publisher."""


@publishers.command("add")
@_repo_option
@click.option("--key", "key_text", required=True, help="Public key: a file or base64 text.")
@click.option(
    "--plugins",
    "plugins",
    multiple=True,
    required=True,
    help="Plugin names it may sign (repeat, or separate with commas); * for any.",
)
@click.option("--label", default="", help="Who it is, for list.")
def publishers_add(repo_dir: Path, key_text: str, plugins: tuple[str, ...], label: str) -> None:
    """Accept packages of PLUGINS signed by KEY."""
    names = [n.strip() for value in plugins for n in value.split(",") if n.strip()]
    with _refusals(), IndexRepo.open(repo_dir) as repo:
        known = repo.add_publisher(_public_key(key_text), names, label=label)
    click.echo(f"publisher key {known.key_id[:16]} may sign {', '.join(known.plugins)}")


@publishers.command("remove")
@_repo_option
@click.argument("key_id")
def publishers_remove(repo_dir: Path, key_id: str) -> None:
    """Stop accepting packages signed by KEY_ID (releases already added stay)."""
    with _refusals(), IndexRepo.open(repo_dir) as repo:
        gone = repo.remove_publisher(key_id)
    click.echo(f"publisher key {gone.key_id[:16]} removed")


@publishers.command("list")
@_repo_option
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
def publishers_list(repo_dir: Path, as_json: bool) -> None:
    """The known publisher keys and the plugins each may sign."""
    with _refusals(), IndexRepo.open(repo_dir) as repo:
        found = repo.publishers()
    if as_json:
        click.echo(json.dumps([p.to_json() for p in found], sort_keys=True))
        return
    for p in found:
        click.echo(f"{p.key_id[:16]}  {p.label or '-'}  {', '.join(p.plugins)}")
    if not found:
        click.echo("no publisher keys: index add accepts only delegated publishers' packages")


#: What `cli.main` adds to the `index` group.
COMMANDS = (yank_cmd, unyank_cmd, remove_cmd, gc_cmd, publishers)
