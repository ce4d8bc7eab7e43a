"""The search box's work: what the registries offer, and installing, upgrading and removing it.

Why this exists: the page's "quick search bar" must do exactly what `pm-plugins search`,
`install NAME`, `upgrade NAME` and `uninstall NAME` do, with the same checks (TUF, the
publisher's signature verified like the loader, consent, the lock), so it makes the same
library calls (`registry_client`), never one of its own. What differs is the person: there is
no terminal to ask, so a release that needs consent (wider capabilities, a new signer, a
downgrade) is refused with the library's sentence, as the command line does without a
terminal. Progress goes to `say`, one line at a time, and the page shows it live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keys.store import TrustStore
from loader.home import Home, read_host_settings
from loader.journal import reading
from loader.lockfile import read_lock
from registry_client.default_index import ensure_default_registry
from registry_client.errors import REFUSALS as LIBRARY_REFUSALS
from registry_client.installer import InstallError, InstallResult, uninstall
from registry_client.registry_install import choose, install_from_index
from registry_client.replacing import Replacing
from registry_client.reports import install_report
from registry_client.resolve import parse_request
from registry_client.search import newest_matching
from registry_client.sources import Chosen, open_clients
from registry_client.tuf_client import RegistryClient

__all__ = ["REFUSALS", "Say", "install", "search", "uninstall_plugin", "upgrade"]

Say = Callable[[str], None]
#: Running plugin versions of the booted host (None: no host answers).
Running = Callable[[], "dict[str, str] | None"]
#: What the library refuses with: each is one sentence for the page.
REFUSALS: tuple[type[Exception], ...] = (*LIBRARY_REFUSALS, OSError)


def search(home: Home, text: str, say: Say) -> list[dict[str, Any]]:
    """The newest release of every plugin whose name or description contains `text`, from
    every registry's signed metadata (cached metadata, with a note, when one cannot be
    reached), with the installed version of each; a yanked release is the newest only when
    every release of its plugin is yanked."""
    found = newest_matching(_clients(home, say, cached_ok=True), text)
    with reading(home):
        locked = read_lock(home.lock_file)
    return [
        {
            "name": r.name,
            "version": r.version,
            "types": list(r.types),
            "description": r.description,
            "publisher": r.publisher,
            "registry": registry,
            "installed": locked[r.name].version if r.name in locked else None,
        }
        for registry, r in found
    ]


def install(home: Home, name: str, say: Say, running: Running) -> None:
    """`pm-plugins install NAME` without a terminal."""
    parse_request(name)  # a malformed request fails before any network
    clients = _clients(home, say)
    chosen = choose(home, [name], clients)
    if not chosen:
        say(f"nothing to do: {parse_request(name)[0]} is installed")
        return
    _install(home, chosen, clients, say, running)


def upgrade(home: Home, name: str, say: Say, running: Running) -> None:
    """`pm-plugins upgrade NAME` without a terminal: never to an older release."""
    with reading(home):
        if name not in read_lock(home.lock_file):
            raise InstallError(f"plugin {name} is not installed")
    clients = _clients(home, say)
    chosen = choose(home, [name], clients, upgrade=True, note=say)
    if not chosen:
        say(f"{name} is up to date")
        return
    _install(home, chosen, clients, say, running)


def uninstall_plugin(home: Home, name: str, say: Say, running: Running) -> None:
    """`pm-plugins uninstall NAME` (refused while another installed plugin needs it)."""
    version = uninstall(home, name)
    say(f"uninstalled {name} {version}")
    now = running() or {}
    if name in now:
        say(
            f"note: the booted host still runs {name} {now[name]}; restart it "
            f"(`pm-plugins stop`, then `boot`) to stop running it"
        )


def _install(
    home: Home, chosen: list[Chosen], clients: list[RegistryClient], say: Say, running: Running
) -> None:
    results = install_from_index(
        home,
        chosen,
        clients,
        trust=TrustStore.load(home.trust_store),
        progress=say,
        threshold=read_host_settings(home.host_settings).signature_threshold,
        allow_capabilities=False,
        ask=None,  # no terminal: consent is refused, as the command line does without one
        replacing=Replacing(),
    )
    _report(results, say, running())


def _report(results: list[InstallResult], say: Say, now: dict[str, str] | None) -> None:
    """The command line's report of an install, the note about a booted host included."""
    for line in install_report(results, now):
        say(line)


def _clients(home: Home, say: Say, *, cached_ok: bool = False) -> list[RegistryClient]:
    """The configured registries, refreshed; the embedded default one on first use."""
    ensure_default_registry(home, say)
    return open_clients(home, say, cached_ok=cached_ok)
