"""`pm-plugins keys ...` and `pm-plugins package`: publisher keys, the trust store, signing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli.common import Context, T, emit, pass_ctx, refusals
from cli.render import table
from host.control import ControlError, request
from keys import ed25519
from keys.errors import KeyFileError
from keys.store import LEVELS, TrustStore
from loader.journal import state_lock
from registry_client.package import build_package

# -- keys -----------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Publisher keys and the trust store."""


def _passphrase(confirm: bool) -> bytes:
    from_env = ed25519.passphrase_from_env()
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"a passphrase is needed: set {ed25519.PASSPHRASE_ENV} or run in a terminal"
        )
    text: str = click.prompt(
        "Key passphrase", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return text.encode()


@keys.command("generate")
@click.argument("name")
@pass_ctx
def keys_generate(ctx: Context, name: str) -> None:
    """Make a new signing key NAME (encrypted with a passphrase) in the state root."""
    with refusals():
        if not name.replace("-", "").replace("_", "").isalnum():
            raise click.ClickException(f"{name!r} is not a key name (letters, digits, - and _)")
        ctx.home.ensure()
        ctx.home.keys_dir.mkdir(mode=0o700, exist_ok=True)
        key = ed25519.generate()
        path = ctx.home.keys_dir / f"{name}.key"
        ed25519.save_private_key(path, key, _passphrase(confirm=True))
        public = ed25519.public_key_to_text(key.public_key())
        (ctx.home.keys_dir / f"{name}.pub").write_text(public + "\n")
    click.echo(f"key {name}: {path}")
    click.echo(f"key id {ed25519.key_id(key)}")
    click.echo(f"public key {public}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def keys_list(ctx: Context, as_json: bool) -> None:
    """Trusted publisher keys, revoked key ids, and your own keys."""
    with refusals():
        store = ctx.trust()
    own = sorted(p.stem for p in ctx.home.keys_dir.glob("*.key"))
    data: dict[str, Any] = {
        "trusted": [
            {"key_id": k.key_id, "level": k.level, "label": k.label} for k in store.keys.values()
        ],
        "revoked": sorted(store.revoked),
        "own": own,
    }
    rows = [[k["key_id"], k["level"], k["label"]] for k in data["trusted"]]
    rows += [[kid, "REVOKED", ""] for kid in data["revoked"]]
    text = table(["KEY ID", "LEVEL", "LABEL"], rows) if rows else "no trusted keys"
    if own:
        text += "\nyour keys: " + ", ".join(own)
    emit(data, as_json, text)


def _public_key_arg(value: str) -> Any:
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_bytes()[:4096].decode("ascii")
        except UnicodeDecodeError as err:
            raise KeyFileError(f"{path}: is not a base64 public key") from err
        return ed25519.public_key_from_text(text.strip(), source=str(path))
    return ed25519.public_key_from_text(value.strip(), source="the public key given")


def _change_trust(ctx: Context, change: Callable[[TrustStore], T]) -> T:
    """Load the trust store, apply `change`, save it atomically, under the state root's
    lock (two trust changes at once never lose one)."""
    with refusals(), state_lock(ctx.home):
        store = ctx.trust()
        result = change(store)
        store.save(ctx.home.trust_store)
    return result


@keys.command("trust")
@click.argument("public_key")
@click.option("--level", type=click.Choice(LEVELS), default="community", show_default=True)
@click.option("--label", default="", help="Who this key belongs to.")
@pass_ctx
def keys_trust(ctx: Context, public_key: str, level: str, label: str) -> None:
    """Trust a publisher's PUBLIC_KEY (base64 text, or a file holding it)."""
    entry = _change_trust(ctx, lambda store: store.trust(_public_key_arg(public_key), level, label))
    click.echo(f"trusted key {entry.key_id} ({level}{', ' + label if label else ''})")


@keys.command("untrust")
@click.argument("key_id")
@pass_ctx
def keys_untrust(ctx: Context, key_id: str) -> None:
    """Stop trusting KEY_ID (it can be trusted again later)."""
    _change_trust(ctx, lambda store: store.untrust(key_id))
    click.echo(f"key {key_id} is no longer trusted")
    _tell_booted_host(ctx)


@keys.command("revoke")
@click.argument("key_id")
@pass_ctx
def keys_revoke(ctx: Context, key_id: str) -> None:
    """Revoke KEY_ID for good: nothing it signed runs or installs again."""
    _change_trust(ctx, lambda store: store.revoke(key_id))
    click.echo(f"key {key_id} is revoked")
    _tell_booted_host(ctx)


def _tell_booted_host(ctx: Context) -> None:
    """A booted host stops the plugins the change leaves without enough trusted signers;
    with no host running there is nothing to tell (the next boot checks anyway)."""
    if not ctx.home.control_socket.exists():
        return
    try:
        stopped = request(ctx.home.control_socket, "trust-changed")["stopped"]
    except ControlError as err:
        click.echo(f"warning: the booted host was not told: {err}", err=True)
        return
    for name in stopped:
        click.echo(f"stopped plugin {name} in the booted host: its signers are no longer trusted")


@keys.command("export")
@click.argument("name")
@pass_ctx
def keys_export(ctx: Context, name: str) -> None:
    """Print the public key of your key NAME (to give to users who trust you)."""
    path = ctx.home.keys_dir / f"{name}.pub"
    if not path.is_file():
        raise click.ClickException(f"you have no key named {name} (no {path})")
    click.echo(path.read_text().strip())


# -- packages and installs ------------------------------------------------------------------


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_paths",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="A key file or the name of one of your keys; repeat it for more signatures (the "
    "keys then share one passphrase).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"))
@pass_ctx
def package(ctx: Context, directory: Path, key_paths: tuple[Path, ...], out: Path) -> None:
    """Sign the plugin in DIRECTORY (plugin.toml + executable) into a package under --out.

    --key is a key file, or the name of one of your keys (`keys generate`).
    """
    with refusals():
        passphrase = _passphrase(confirm=False)
        signers: list[Ed25519PrivateKey] = []
        for key_path in key_paths:
            if not key_path.exists():
                named = ctx.home.keys_dir / f"{key_path}.key"
                if not named.exists():
                    raise click.ClickException(
                        f"{key_path} is neither a key file nor one of your keys "
                        f"(in {ctx.home.keys_dir}; see `pm-plugins keys list`)"
                    )
                key_path = named
            key = ed25519.load_private_key(key_path, passphrase)
            if any(ed25519.key_id(k) == ed25519.key_id(key) for k in signers):
                raise click.ClickException(
                    f"{key_path} is the same key as an earlier --key; a threshold counts "
                    f"distinct keys"
                )
            signers.append(key)
        made = build_package(directory, signers, out)
    signed_by = ", ".join(f"{ed25519.key_id(k)[:12]}..." for k in signers)
    click.echo(f"packaged {made} (signed by key {signed_by})")
