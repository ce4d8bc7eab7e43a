"""Several registries side by side, over real HTTP on 127.0.0.1: the embedded example index
never hides a real registry, a plugin stays with the registry its lock names, an unreachable
registry is a warning while another serves, search reads cached signed metadata with a note,
and `registry add` checks the URL before saving anything."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from index import IndexRepo
from keys import ed25519
from keys.store import TrustStore
from loader.home import Home
from loader.lockfile import read_lock
from registry_client.default_index import ensure_default_registry
from registry_client.installer import InstallError, read_package
from registry_client.registries import add_registry, read_registries
from registry_client.registry_install import _check_delegation, choose, install_from_index
from registry_client.sources import open_clients, publisher_role
from registry_client.tuf_client import RegistryError
from tests.tuf_helpers import PASSPHRASE, IndexServer, make_package, release


@dataclass
class Served:
    repo: IndexRepo
    server: IndexServer
    publisher: Ed25519PrivateKey


Serve = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Makes registries holding `hosts` at the given versions, each served on 127.0.0.1."""
    made: list[Served] = []

    def make(name: str, *versions: str) -> Served:
        publisher = ed25519.generate()
        repo = IndexRepo.init(tmp_path / f"repo-{name}", passphrase=PASSPHRASE)
        repo.add_releases([release("hosts", v, publisher) for v in versions])
        repo.publish()
        served = Served(repo, IndexServer(repo.published_dir), publisher)
        made.append(served)
        return served

    yield make
    for served in made:
        served.server.close()
        served.repo.close()


def add(home: Home, name: str, served: Served) -> None:
    store = TrustStore.load(home.trust_store)
    store.trust(served.publisher.public_key(), "community", name)
    store.save(home.trust_store)
    add_registry(home, name, served.server.url, served.repo.root_bytes())


def install(home: Home, *requests: str, upgrade: bool = False) -> list[str]:
    lines: list[str] = []
    clients = open_clients(home, lines.append)
    chosen = choose(home, requests, clients, upgrade=upgrade)
    trust = TrustStore.load(home.trust_store)
    install_from_index(home, chosen, clients, trust=trust, progress=lines.append)
    return lines


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A state root whose first command published the embedded index (hosts 1.0.0)."""
    state = Home(tmp_path / "home")
    state.ensure()
    ensure_default_registry(state, lambda _: None)
    return state


def test_the_embedded_index_never_shadows_a_real_registry(home: Home, serve: Serve) -> None:
    add(home, "real", serve("real", "1.1.0"))
    assert [r.name for r in read_registries(home)] == ["default", "real"]
    install(home, "hosts>=1.1")
    locked = read_lock(home.lock_file)["hosts"]
    assert (locked.version, locked.registry) == ("1.1.0", "real")


def test_the_same_version_comes_from_the_real_registry(home: Home, serve: Serve) -> None:
    add(home, "real", serve("real", "1.0.0"))
    install(home, "hosts==1.0.0")
    assert read_lock(home.lock_file)["hosts"].registry == "real"


def test_a_plugin_stays_with_the_registry_its_lock_names(home: Home, serve: Serve) -> None:
    add(home, "real", serve("real", "1.1.0"))
    install(home, "hosts")
    add(home, "other", serve("other", "9.0.0"))
    clients = open_clients(home, lambda _: None)
    assert choose(home, ["hosts"], clients, upgrade=True) == []  # 9.0.0 is not real's
    (pick,) = choose(home, ["hosts"], clients, registry="other")
    assert (pick.registry, pick.release.version) == ("other", "9.0.0")


def test_an_unreachable_registry_is_a_warning_while_another_serves(
    home: Home, serve: Serve
) -> None:
    real = serve("real", "1.1.0")
    add(home, "real", real)
    add(home, "gone", serve("gone", "5.0.0"))
    _close(home, "gone")
    lines = install(home, "hosts")
    warning = [ln for ln in lines if ln.startswith("warning: ")]
    assert len(warning) == 1 and warning[0].endswith("going on without registry gone")
    assert "\n" not in warning[0] and "Traceback" not in warning[0]
    assert read_lock(home.lock_file)["hosts"].version == "1.1.0"


def _close(home: Home, name: str) -> None:
    """Point registry `name` at a port nothing listens on (the server went away)."""
    doc = json.loads((home.root / "registries.json").read_text())
    for entry in doc["registries"]:
        if entry["name"] == name:
            entry["url"] = "http://127.0.0.1:9/"
    (home.root / "registries.json").write_text(json.dumps(doc))


def test_search_reads_cached_signed_metadata_when_no_registry_answers(
    tmp_path: Path, serve: Serve
) -> None:
    state = Home(tmp_path / "alone")
    state.ensure()
    state.root.joinpath("registries.json").write_text('{"version": 1, "registries": []}')
    add(state, "real", serve("real", "1.1.0"))
    open_clients(state, lambda _: None)  # a first refresh fills the cache
    _close(state, "real")
    with pytest.raises(RegistryError) as err:
        open_clients(state, lambda _: None)
    assert str(err.value).startswith("registry real:") and "\n" not in str(err.value)
    notes: list[str] = []
    (cached,) = open_clients(state, notes.append, cached_ok=True)
    assert [r.version for r in cached.find("hosts")] == ["1.1.0"]
    assert len(notes) == 1 and notes[0].startswith("note: registry real:")
    assert notes[0].endswith("showing its cached signed metadata instead")


def test_registry_add_checks_the_url_before_saving(tmp_path: Path, serve: Serve) -> None:
    state = Home(tmp_path / "alone")
    state.ensure()
    real = serve("real", "1.1.0")
    with pytest.raises(RegistryError):
        add_registry(state, "wrong", "http://127.0.0.1:9/", real.repo.root_bytes())
    assert read_registries(state) == []
    assert not (state.root / "registries" / "wrong").exists()


def test_a_delegated_plugin_must_be_signed_by_a_key_of_its_role(tmp_path: Path, home: Home) -> None:
    acme, other = ed25519.generate(), ed25519.generate()
    repo = IndexRepo.init(tmp_path / "repo-delegated", passphrase=PASSPHRASE)
    repo.delegate("acme", acme.public_key(), ["hosts"], publisher_key=acme)
    repo.add_releases([release("hosts", "1.0.0", acme)], publisher_keys=[acme])
    repo.publish()
    server = IndexServer(repo.published_dir)
    try:
        add(home, "real", Served(repo, server, acme))
        store = TrustStore.load(home.trust_store)
        store.trust(other.public_key(), "official", "another publisher")
        store.save(home.trust_store)
        (client,) = [c for c in open_clients(home, lambda _: None) if c.name == "real"]
        assert publisher_role(client, "hosts") == (
            "publisher-acme",
            frozenset({ed25519.key_id(acme)}),
        )
        assert publisher_role(client, "allowlist") is None
        trust = TrustStore.load(home.trust_store)
        by_other = make_package(tmp_path / "dist", "hosts", "1.1.0", other)
        with pytest.raises(InstallError) as err:
            _check_delegation(client, read_package(by_other, trust=trust, dev_mode=False))
        assert str(err.value) == (
            "refusing hosts 1.1.0: registry real delegates hosts to role publisher-acme, and "
            f"its manifest is signed by {ed25519.key_id(other)[:12]}..., not by a key of that role"
        )
        by_acme = make_package(tmp_path / "dist2", "hosts", "1.1.0", acme)
        _check_delegation(client, read_package(by_acme, trust=trust, dev_mode=False))
    finally:
        server.close()
        repo.close()
