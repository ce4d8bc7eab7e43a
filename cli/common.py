"""What every `pm-plugins` command shares: the context (state root, dev mode, trust),
the one place where refusals become one sentence, and output as text or JSON."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from keys.store import TrustStore
from loader.home import Home, dev_mode_from, read_host_settings
from registry_client.default_index import ensure_default_registry
from registry_client.errors import REFUSALS
from registry_client.sources import open_clients
from registry_client.tuf_client import RegistryClient


@dataclass
class Context:
    home: Home
    dev_mode_flag: bool

    def dev_mode(self) -> bool:
        return dev_mode_from(self.dev_mode_flag, read_host_settings(self.home.host_settings))

    def trust(self) -> TrustStore:
        return TrustStore.load(self.home.trust_store)

    def threshold(self) -> int:
        """How many distinct trusted keys must sign a manifest (host.json)."""
        return read_host_settings(self.home.host_settings).signature_threshold


pass_ctx = click.make_pass_decorator(Context)
T = TypeVar("T")


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """Our errors become one sentence and exit 1; nothing else is swallowed."""
    try:
        yield
    except REFUSALS as err:
        raise click.ClickException(str(err)) from err
    except OSError as err:  # the disk, not us: say which file and what the system said
        where = f"{err.filename}: " if err.filename else ""
        raise click.ClickException(f"{where}{err.strerror or err}") from err


def emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def progress(line: str) -> None:
    """A line about long work, on stderr (stdout stays the command's answer)."""
    click.echo(line, err=True)


def registry_clients(ctx: Context, *, cached_ok: bool = False) -> list[RegistryClient]:
    """The configured registries that can be read, refreshed; the embedded default one on
    first use. `cached_ok`: one that cannot be reached is read from its cached metadata."""
    ensure_default_registry(ctx.home, progress)
    return open_clients(ctx.home, progress, cached_ok=cached_ok)
