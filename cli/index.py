"""`pm-plugins index ...`: the maintainer commands over :mod:`index`.

``verify`` reads the published index back through the user's client
(``registry_client.readback``), which ``index`` may not import. Each command parses its
options, calls the library, prints one or two plain lines, and turns every refusal into one
sentence and a non-zero exit.

Each role's keys have their own passphrase (``cli.passphrases``); publisher keys given
with ``--publisher-key`` are opened with ``PM_PLUGINS_KEY_PASSPHRASE``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from cli.passphrases import Passphrases, role_passphrases
from index import (
    ExpiryPolicy,
    IndexRepo,
    IndexRepoError,
    PushResult,
    RoleKeys,
    S3Location,
    make_server,
    push,
)
from index.intake import MAX_ENVELOPE, release_from_package
from index.paths import TOP_ROLES
from index.s3_client import make_client
from keys import ed25519
from keys.errors import KeysError
from loader.errors import LoaderError
from registry_client.readback import read_back
from registry_client.tuf_client import RegistryError

__all__ = ["index"]

T = TypeVar("T")
_DIR = click.Path(file_okay=False, path_type=Path)


@contextmanager
def _refusals() -> Iterator[None]:
    """Every refusal of the libraries below is one sentence and exit status 1."""
    try:
        yield
    except (IndexRepoError, KeysError, LoaderError, RegistryError) as e:
        raise click.ClickException(str(e)) from e
    except OSError as err:  # the disk, not us: which file and what the system said
        where = f"{err.filename}: " if err.filename else ""
        raise click.ClickException(f"{where}{err.strerror or err}") from err


def _passphrase() -> Passphrases:
    return role_passphrases()


def _repo_option(f: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--repo",
        "repo_dir",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The index repository folder.",
    )(f)


def _pairs(values: Sequence[str], what: str) -> dict[str, int]:
    """ROLE=N options -> {role: n}."""
    out: dict[str, int] = {}
    for value in values:
        role, sep, number = value.partition("=")
        if not sep or role not in TOP_ROLES or not number.isdigit():
            raise click.BadParameter(
                f"{value!r} is not ROLE=N with ROLE one of {', '.join(TOP_ROLES)}",
                param_hint=what,
            )
        out[role] = int(number)
    return out


def _load_private(path: Path) -> Ed25519PrivateKey:
    return ed25519.load_private_key(path, ed25519.passphrase_from_env())


def _public_key(text: str) -> Ed25519PublicKey:
    """A public key given as a file (base64 raw or PEM) or as base64 text."""
    candidate = Path(text)
    if candidate.is_file():
        data = candidate.read_bytes()[:MAX_ENVELOPE]
        if b"-----BEGIN PUBLIC KEY-----" in data:
            try:
                key = serialization.load_pem_public_key(data)
            except ValueError as e:
                raise click.ClickException(f"{text}: is not a PEM public key") from e
            if not isinstance(key, Ed25519PublicKey):
                raise click.ClickException(f"{text}: is not an Ed25519 public key")
            return key
        try:
            return ed25519.public_key_from_text(data.decode("ascii").strip(), source=text)
        except UnicodeDecodeError as e:
            raise click.ClickException(f"{text}: is not a base64 public key") from e
    try:
        return ed25519.public_key_from_text(text, source="--key")
    except KeysError:
        if "/" in text or text.endswith((".pub", ".pem")):  # meant as a file
            raise click.ClickException(
                f"{text}: no such file, and not a base64 public key"
            ) from None
        raise


@click.group("index")
def index() -> None:
    """Maintainers: build, sign and publish the TUF index of plugin releases."""


@index.command("init")
@_repo_option
@click.option("--keys", "key_counts", multiple=True, metavar="ROLE=N", help="Keys per role.")
@click.option("--threshold", "thresholds", multiple=True, metavar="ROLE=N", help="Signatures.")
@click.option(
    "--expires", "expires", multiple=True, metavar="ROLE=DAYS", help="Expiry policy (days)."
)
@click.option("--hash-bins", type=int, default=0, help="Hold targets in N hash bins.")
@click.option("--offline-root", type=_DIR, help="Write the root keys to DIR, not the repo.")
@click.option("--offline-targets", type=_DIR, help="Write the targets keys to DIR, not the repo.")
def init_cmd(
    repo_dir: Path,
    key_counts: tuple[str, ...],
    thresholds: tuple[str, ...],
    expires: tuple[str, ...],
    hash_bins: int,
    offline_root: Path | None,
    offline_targets: Path | None,
) -> None:
    """Create a repository: keys for root, targets, snapshot and timestamp, root v1."""
    counts = _pairs(key_counts, "--keys")
    limits = _pairs(thresholds, "--threshold")
    days = _pairs(expires, "--expires")
    with _refusals():
        roles = {}
        for role in TOP_ROLES:
            threshold = limits.get(role, 1)
            roles[role] = RoleKeys(keys=counts.get(role, max(threshold, 1)), threshold=threshold)
        policy = ExpiryPolicy(**{**ExpiryPolicy().to_json(), **days})
        with IndexRepo.init(
            repo_dir,
            passphrase=_passphrase(),
            roles=roles,
            expiry=policy,
            hash_bins=hash_bins,
            offline={"root": offline_root, "targets": offline_targets},
        ) as repo:
            bins = f", {repo.hash_bins()} hash bins" if hash_bins else ""
        described = ", ".join(
            f"{role} {roles[role].threshold}-of-{roles[role].keys}" for role in TOP_ROLES
        )
        click.echo(f"initialised index repository {repo_dir}: keys {described}{bins}")
        click.echo(f"next: pm-plugins index add --repo {repo_dir} PACKAGE..., then publish")


@index.command("add")
@_repo_option
@click.argument(
    "packages", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--publisher-key",
    "publisher_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A delegated publisher's private key, to sign their role.",
)
def add_cmd(repo_dir: Path, packages: tuple[Path, ...], publisher_keys: tuple[Path, ...]) -> None:
    """Add plugin releases (package folders) to the index; publish makes them visible."""
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        keys = [_load_private(p) for p in publisher_keys]
        releases = [release_from_package(p, repo) for p in packages]
        added = repo.add_releases(releases, publisher_keys=keys)
        for rel in added:
            click.echo(f"added {rel.name} {rel.version} ({rel.platform}) to role {rel.role}")
        click.echo(f"run pm-plugins index publish --repo {repo_dir} to publish")


def _endpoint_option(f: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--endpoint-url",
        default=None,
        help="The S3 endpoint, e.g. http://127.0.0.1:7070 (default: AWS_ENDPOINT_URL or AWS).",
    )(f)


def _progress(line: str) -> None:
    click.echo(line, err=True)


def _said_push(result: PushResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
        return
    for key in result.uploaded if result.dry_run else ():
        click.echo(f"would upload {key}")
    verb = "would upload" if result.dry_run else "uploaded"
    click.echo(
        f"{result.to}: {verb} {len(result.uploaded)} object(s), {result.bytes} bytes;"
        f" {result.skipped} already there; timestamp v{result.timestamp_version}"
    )


@index.command("publish")
@_repo_option
@click.option("--hash-bins", type=int, default=None, help="Move targets into N hash bins first.")
@click.option("--to", default=None, metavar="s3://BUCKET/PREFIX", help="Then push it there.")
@_endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def publish_cmd(
    repo_dir: Path, hash_bins: int | None, to: str | None, endpoint_url: str | None, as_json: bool
) -> None:
    """Sign what changed, then snapshot and timestamp; write DIR/published (and push it)."""
    with _refusals():
        where = S3Location.parse(to) if to is not None else None
        s3 = make_client(endpoint_url) if where is not None else None  # refused before signing
        with IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
            if hash_bins is not None:
                repo.set_hash_bins(hash_bins)
            result = repo.publish()
            pushed = None
            if where is not None:  # still holding the lock: the folder is as published
                pushed = push(repo.published_dir, where, client=s3, progress=_progress)
    if as_json:
        extra = {"push": pushed.to_json()} if pushed else {}
        click.echo(json.dumps({**result.__dict__, **extra}, sort_keys=True))
        return
    bins = {r: v for r, v in result.signed.items() if r.startswith("bin-")}
    named = [f"{role} v{v}" for role, v in result.signed.items() if role not in bins]
    if bins:
        named.append(f"{len(bins)} hash bin(s)")
    signed = ", ".join(named)
    click.echo(
        f"published {repo_dir / 'published'}: root v{result.root_version}, snapshot"
        f" v{result.snapshot_version}, timestamp v{result.timestamp_version}"
        f" ({result.metadata_written} metadata and {result.targets_written} target files"
        " written)"
    )
    click.echo(f"signed: {signed}" if signed else "no role besides root changed")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if pushed:
        _said_push(pushed, False)


@index.command("timestamp")
@_repo_option
def timestamp_cmd(repo_dir: Path) -> None:
    """Sign a fresh timestamp for the published index (nothing else changes)."""
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        version = repo.timestamp()
        days = repo.expiry.timestamp
    click.echo(f"signed timestamp v{version}, valid for {days} day(s)")


@index.command("rotate")
@_repo_option
@click.argument("role", type=click.Choice(TOP_ROLES))
@click.option("--keys", "count", type=int, default=None, help="New number of keys.")
@click.option("--threshold", type=int, default=None, help="New threshold.")
@click.option("--keys-dir", type=_DIR, help="Write the new keys to DIR (offline).")
def rotate_cmd(
    repo_dir: Path, role: str, count: int | None, threshold: int | None, keys_dir: Path | None
) -> None:
    """Replace a role's keys; the new root is signed by the old and the new root keys."""
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        new_ids = repo.rotate(role, keys=count, threshold=threshold, keys_dir=keys_dir)
        version = repo.role_version("root")
        staged = any(s.role == "root" for s in repo.staged_roles())
    ids = ", ".join(kid[:16] for kid in new_ids)
    where = f"staged root v{version + 1} (index sign-request)" if staged else f"root v{version}"
    click.echo(f"rotated {role} to new key(s) {ids} in {where}")
    click.echo(f"run pm-plugins index publish --repo {repo_dir} to publish")


@index.command("delegate")
@_repo_option
@click.argument("publisher")
@click.option("--key", "key_text", required=True, help="Public key: a file or base64 text.")
@click.option(
    "--plugins",
    "plugins",
    multiple=True,
    required=True,
    help="Plugin names (repeat, or separate with commas).",
)
@click.option(
    "--publisher-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The publisher's private key, to sign their role now.",
)
def delegate_cmd(
    repo_dir: Path,
    publisher: str,
    key_text: str,
    plugins: tuple[str, ...],
    publisher_key: Path | None,
) -> None:
    """Delegate plugins to a publisher's own role, signed by the publisher's key."""
    names = [n.strip() for value in plugins for n in value.split(",") if n.strip()]
    with _refusals(), IndexRepo.open(repo_dir, passphrase=_passphrase()) as repo:
        public = _public_key(key_text)
        private = _load_private(publisher_key) if publisher_key else None
        delegation = repo.delegate(publisher, public, names, publisher_key=private)
    click.echo(
        f"delegated {', '.join(delegation.plugins)} to {publisher} (role {delegation.role},"
        f" key {delegation.key_ids[0][:16]})"
    )
    if private is None:
        click.echo("the publisher's role is signed with their key on their next add")


@index.command("verify")
@_repo_option
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def verify_cmd(repo_dir: Path, as_json: bool) -> None:
    """Read DIR/published back through the TUF client, from root v1, and check every file."""
    with _refusals():
        result = read_back(repo_dir)
    if as_json:
        click.echo(json.dumps(result.counts(), sort_keys=True))
        return
    state = result.state
    click.echo(
        f"verified {result.published}: root v{state.root_version}, timestamp"
        f" v{state.timestamp_version} (expires {state.timestamp_expires:%Y-%m-%d %H:%M} UTC);"
        f" {result.releases} releases of {result.plugins} plugins,"
        f" {result.targets} target files checked"
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


@index.command("serve")
@_repo_option
@click.option("--port", type=int, default=8000, show_default=True)
def serve_cmd(repo_dir: Path, port: int) -> None:
    """Serve DIR/published on 127.0.0.1 until Ctrl-C."""
    published = repo_dir / "published"
    if not (published / "metadata").is_dir():
        raise click.ClickException(f"{published} has no metadata; run publish first")
    try:
        server = make_server(published, port)
    except OSError as e:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port} ({e.strerror or e})") from e
    click.echo(f"serving {published} at {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
