"""`pm-plugins index status | sign-request | sign | import-signatures | unstage | key-uri`:
the keys of a real registry.

Why it exists apart from `cli.index`: that module builds and publishes the index and is
near the house's size limit; these commands look after the keys that sign it
(:mod:`index.status`, :mod:`index.offline`, :mod:`index.staging`, :mod:`index.keystore`):
what expires when, signing with offline keys (export a staged file, sign it on another
machine with `index sign`, which needs no repository, and import the signatures), and
moving a key behind a KMS or HSM URI. They are added to the `index` group by `cli.main`
(`COMMANDS`). `status` exits 3 when a role needs attention (cron-friendly); every
refusal is one sentence and exit status 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

from cli.index import _refusals, _repo_option
from cli.passphrases import role_passphrases as _passphrase
from index import IndexRepo, IndexRepoError
from index.signers import missing_passphrase
from index.staging import describe, read_metadata, sign_file
from index.status import IndexStatus, RoleStatus, index_status
from keys import ed25519

__all__ = ["COMMANDS"]

#: `index status`'s exit status when a role expires within the warning window.
ATTENTION = 3
_FILE = click.Path(dir_okay=False, path_type=Path)


def _role_line(r: RoleStatus) -> str:
    seen = {
        "same": "published",
        "behind": f"v{r.published_version} published",
        "absent": "not published",
        "differs": "PUBLISHED COPY DIFFERS",
    }[r.published]
    name = r.role if r.count == 1 else f"{r.role} ({r.count})"
    keys = ", ".join(f"{k.key_id[:16]} {k.where}" for k in r.keys)
    when = "no expiry yet"
    if r.expires is not None and r.days_left is not None:
        left = f"in {r.days_left:.1f} days" if r.days_left >= 0 else "EXPIRED"
        when = f"expires {r.expires:%Y-%m-%d %H:%M} UTC ({left})"
    staged = f", v{r.staged_version} staged" if r.staged_version else ""
    return (
        f"{name:<14} v{r.version:<4} {seen}{staged}; {r.threshold} of {len(r.keys)} keys"
        f" [{keys}]; {when}"
    )


def _said_status(status: IndexStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status.to_json(), sort_keys=True))
    else:
        for role in status.roles:
            click.echo(_role_line(role))
        for s in status.staged:
            needs = "; ".join(s.waiting_for) or "nothing (import-signatures puts it in effect)"
            click.echo(f"staged: {s.role} v{s.version} ({s.path}) needs {needs}")
    for warning in status.warnings:
        click.echo(f"WARNING: {warning}", err=True)


@click.command("status")
@_repo_option
@click.option("--json", "as_json", is_flag=True, help="Print the roles as JSON.")
@click.option(
    "--warn-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Warn when a role expires within N days (default: a quarter of its lifetime).",
)
def status_cmd(repo_dir: Path, as_json: bool, warn_days: float | None) -> None:
    """Each role's version, keys, threshold and expiry; exit 3 if one needs attention."""
    with _refusals(), IndexRepo.open(repo_dir) as repo:
        status = index_status(repo, warn_days=warn_days)
    _said_status(status, as_json)
    if status.warnings:
        raise SystemExit(ATTENTION)


@click.command("sign-request")
@_repo_option
@click.option("--role", default=None, help="The staged role (default: every one).")
@click.option("--out", type=_FILE, default=None, help="Copy the staged file there to sign.")
def sign_request_cmd(repo_dir: Path, role: str | None, out: Path | None) -> None:
    """Show what waits for offline signatures, and export it to sign elsewhere."""
    with _refusals(), IndexRepo.open(repo_dir) as repo:
        staged = [s for s in repo.staged_roles() if role in (None, s.role)]
        if not staged:
            click.echo(f"nothing in {repo_dir} waits for signatures")
            return
        if out is not None and len(staged) != 1:
            raise IndexRepoError(f"{len(staged)} roles are staged: name one with --role")
        for s in staged:
            for line in describe(read_metadata(s.path)):
                click.echo(line)
            click.echo(f"  needs {'; '.join(s.waiting_for) or 'nothing more'}")
            click.echo(f"  file: {s.path}")
        if out is not None:
            shutil.copyfile(staged[0].path, out)
            click.echo(f"wrote {out}: sign it with pm-plugins index sign {out} --key KEYFILE,")
            click.echo(f"then pm-plugins index import-signatures --repo {repo_dir} {out}")


@click.command("sign")
@click.argument("files", nargs=-1, required=True, type=_FILE)
@click.option("--key", "key_file", required=True, type=_FILE, help="An encrypted key file.")
@click.option("--role", default=None, help="Whose passphrase opens the key (default: the file's).")
def sign_cmd(files: tuple[Path, ...], key_file: Path, role: str | None) -> None:
    """Sign staged metadata FILEs in place with one key file (no repository needed)."""
    with _refusals():
        first = read_metadata(files[0])
        which = role or str(first.signed.type)
        passphrase = _passphrase()(which, False)
        if passphrase is None:
            raise missing_passphrase(which)
        key = ed25519.load_private_key(key_file, passphrase)
        kid = ed25519.key_id(key)
        for file in files:
            md = sign_file(file, key)
            for line in describe(md):
                click.echo(line)
            if isinstance(md.signed, Root) and kid not in md.signed.roles["root"].keyids:
                click.echo(
                    f"  key {kid[:16]} is not one of this root's keys: it counts only if it is"
                    " one of the root before"
                )
            click.echo(f"signed {file} with key {kid[:16]}")


@click.command("import-signatures")
@_repo_option
@click.argument("files", nargs=-1, required=True, type=_FILE)
def import_cmd(repo_dir: Path, files: tuple[Path, ...]) -> None:
    """Bring back signatures made with `index sign`; a version with enough takes effect."""
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        results = repo.import_signatures(files)
    for r in results:
        added = f"{len(r.added)} new signature(s)"
        if r.activated:
            click.echo(f"{r.role} v{r.version}: {added}; it is signed and in effect")
            click.echo(f"run pm-plugins index publish --repo {repo_dir} to publish")
        else:
            click.echo(f"{r.role} v{r.version}: {added}; still needs {'; '.join(r.waiting_for)}")


@click.command("unstage")
@_repo_option
@click.argument("role")
def unstage_cmd(repo_dir: Path, role: str) -> None:
    """Drop a staged role version (and the new keys a staged rotation made)."""
    with _refusals(), IndexRepo.open(repo_dir) as repo:
        version = repo.drop_staged(role)
    click.echo(f"dropped the staged {role} v{version}")


@click.command("key-uri")
@_repo_option
@click.argument("key_id")
@click.argument("uri")
def key_uri_cmd(repo_dir: Path, key_id: str, uri: str) -> None:
    """Sign with KEY_ID through URI from now on (e.g. a KMS or HSM key; tried first)."""
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        root = Metadata[Root].from_bytes(repo.root_bytes()).signed
        kid = repo.keyring.use_uri(root, key_id, uri)
    click.echo(f"key {kid[:16]} now signs through {uri.partition(':')[0]}:")


COMMANDS = (status_cmd, sign_request_cmd, sign_cmd, import_cmd, unstage_cmd, key_uri_cmd)
