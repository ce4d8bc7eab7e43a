"""A release's life after `index add`: yank, unyank, remove, gc, and what `add` and
`publish` refuse. Real keys, a real index served over HTTP on 127.0.0.1, real installs.

Attacks included: a hostile registry's yank field of the wrong type, a registry that yanks
every release, a gc while another command holds the repository, a gc after an interrupted
publish, a package listing an unknown key next to a known one, a publisher role listing
targets outside its paths or signed by another key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Delegations,
    Metadata,
    TargetFile,
    Targets,
)

from cli.main import cli as main_cli
from index import IndexRepo, IndexRepoError
from index.gc import HISTORY_FILE
from index.intake import release_from_package
from index.keyring import tuf_key, tuf_signer
from keys import dsse, ed25519
from keys.errors import StrictJSONError
from keys.store import TrustStore
from loader.home import Home
from loader.lockfile import read_lock
from registry_client.readback import read_back
from registry_client.registries import add_registry
from registry_client.registry_install import choose, install_from_index, open_clients
from registry_client.releases import TargetInfo, _release
from registry_client.resolve import Candidate, ResolutionError, resolve
from registry_client.restore import check_locked, locked_to_restore, releases_for
from registry_client.tuf_client import RegistryClient
from tests.tuf_helpers import PASSPHRASE, PAYLOAD_TYPE, IndexServer, make_package, release

T = TypeVar("T")
HOSTS = ("1.0.0", "1.2.0", "2.0.0")


@dataclass
class Index:
    """An index repository (closed between steps, so the CLI can open it) and its server."""

    path: Path
    publisher: Ed25519PrivateKey
    server: IndexServer
    root: bytes

    def do(self, step: Callable[[IndexRepo], T]) -> T:
        with IndexRepo.open(self.path, passphrase=PASSPHRASE) as repo:
            return step(repo)

    @property
    def published(self) -> Path:
        return self.path / "published"


def new_index(path: Path, *, hash_bins: int = 0) -> Index:
    publisher = ed25519.generate()
    with IndexRepo.init(path, passphrase=PASSPHRASE, hash_bins=hash_bins) as repo:
        repo.add_publisher(publisher.public_key(), ["*"], label="test")
        repo.add_releases([release("hosts", v, publisher) for v in HOSTS])
        repo.publish()
        root = repo.root_bytes(1)
    return Index(path, publisher, IndexServer(path / "published"), root)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    made = new_index(tmp_path / "repo")
    yield made
    made.server.close()


def make_home(path: Path, index: Index) -> Home:
    home = Home(path)
    home.ensure()
    store = TrustStore()
    store.trust(index.publisher.public_key(), "community", "test publisher")
    store.save(home.trust_store)
    add_registry(home, "test", index.server.url, index.root)
    return home


@pytest.fixture
def home(tmp_path: Path, index: Index) -> Home:
    return make_home(tmp_path / "home", index)


def install(home: Home, *requests: str, upgrade: bool = False) -> list[str]:
    """Install through the library as the CLI does; returns the progress lines."""
    lines: list[str] = []
    clients = open_clients(home, lines.append)
    chosen = choose(home, requests, clients, upgrade=upgrade, note=lines.append)
    if not chosen:
        return lines
    install_from_index(
        home, chosen, clients, trust=TrustStore.load(home.trust_store), progress=lines.append
    )
    return lines


def installed(home: Home) -> dict[str, str]:
    return {n: e.version for n, e in read_lock(home.lock_file).items()}


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    """`pm-plugins --home HOME ARGS...` in process; `home` defaults to a scratch one."""
    monkeypatch.setenv(ed25519.PASSPHRASE_ENV, PASSPHRASE.decode())
    runner = CliRunner()

    def invoke(*args: str, home: Path | None = None) -> Result:
        where = home or tmp_path / "scratch-home"
        return runner.invoke(main_cli, ["--home", str(where), *args])

    return invoke


def published_bytes(index: Index) -> dict[str, bytes]:
    return {
        str(p.relative_to(index.published)): p.read_bytes()
        for p in index.published.rglob("*")
        if p.is_file()
    }


# -- yank -------------------------------------------------------------------------------------


def test_yank_hides_a_release_from_a_range_and_upgrade_but_not_from_a_pin(
    index: Index, home: Home, run: Callable[..., Result]
) -> None:
    r = run("index", "yank", "--repo", str(index.path), "hosts", "2.0.0", "--reason", "breaks DNS")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "yanked hosts 2.0.0 (breaks DNS)"
    assert run("index", "publish", "--repo", str(index.path)).exit_code == 0
    lines = install(home, "hosts")
    assert installed(home) == {"hosts": "1.2.0"}
    assert not any("yanked" in line for line in lines)
    assert install(home, "hosts", upgrade=True)[-1:] == ["registry test: index version 2"]
    assert installed(home) == {"hosts": "1.2.0"}
    lines = install(home, "hosts==2.0.0")
    assert "warning: hosts 2.0.0 is yanked: breaks DNS" in lines
    assert installed(home) == {"hosts": "2.0.0"}
    info = run("info", "hosts", home=home.root)
    assert info.exit_code == 0, info.output
    assert "releases: 1.2.0 (any), 1.0.0 (any), 2.0.0 (any) (yanked: breaks DNS)" in info.output
    assert "newest release 1.2.0:" in info.output
    as_json = json.loads(run("info", "hosts", "--json", home=home.root).stdout)
    assert [(d["version"], d["yanked"], d["yanked_reason"]) for d in as_json][-1] == (
        "2.0.0",
        True,
        "breaks DNS",
    )
    found = json.loads(run("search", "hosts", "--json", home=home.root).stdout)
    assert [d["version"] for d in found] == ["1.2.0"]


def test_unyank_brings_it_back_and_repeats_change_nothing(
    index: Index, home: Home, run: Callable[..., Result]
) -> None:
    repo_arg = ("--repo", str(index.path))
    assert run("index", "yank", *repo_arg, "hosts", "2.0.0").exit_code == 0
    again = run("index", "yank", *repo_arg, "hosts", "2.0.0")
    assert "already yanked" in again.output
    index.do(lambda repo: repo.publish())
    assert "warning: hosts 2.0.0 is yanked: no reason given" in install(home, "hosts==2.0.0")
    r = run("index", "unyank", *repo_arg, "hosts", "2.0.0")
    assert r.exit_code == 0 and r.output.startswith("unyanked hosts 2.0.0"), r.output
    assert "is not yanked" in run("index", "unyank", *repo_arg, "hosts", "2.0.0").output
    index.do(lambda repo: repo.publish())
    (client,) = open_clients(home, lambda _: None)
    assert [(r.version, r.yanked) for r in client.find("hosts")][-1] == ("2.0.0", False)
    missing = run("index", "yank", *repo_arg, "hosts", "9.9")
    assert missing.exit_code == 1 and "hosts 9.9 is not in the index" in missing.output


def test_a_locked_install_still_gets_a_yanked_release_with_a_warning(
    index: Index, home: Home, tmp_path: Path
) -> None:
    install(home, "hosts==1.2.0")
    index.do(lambda repo: repo.yank("hosts", "1.2.0", reason="CVE-2026-1"))
    index.do(lambda repo: repo.publish())
    other = make_home(tmp_path / "new-machine", index)
    for name in ("plugins.json", "plugins.lock"):
        (other.root / name).write_bytes((home.root / name).read_bytes())
    lines: list[str] = []
    wanted = locked_to_restore(other)
    clients = open_clients(other, lines.append)
    install_from_index(
        other,
        releases_for(wanted, clients),
        clients,
        trust=TrustStore.load(other.trust_store),
        progress=lines.append,
        check=check_locked(wanted),
    )
    assert "warning: hosts 1.2.0 is yanked: CVE-2026-1" in lines
    assert installed(other) == {"hosts": "1.2.0"}


def test_upgrade_from_a_yanked_install_never_goes_down(index: Index, home: Home) -> None:
    install(home, "hosts==2.0.0")
    index.do(lambda repo: repo.yank("hosts", "2.0.0"))
    index.do(lambda repo: repo.publish())
    lines = install(home, "hosts", upgrade=True)
    assert "keeping hosts 2.0.0: its newest release there is 1.2.0" in lines[-1]
    assert installed(home) == {"hosts": "2.0.0"}
    index.do(lambda repo: repo.add_releases([release("hosts", "2.1.0", index.publisher)]))
    index.do(lambda repo: repo.publish())
    install(home, "hosts", upgrade=True)
    assert installed(home) == {"hosts": "2.1.0"}


def test_a_registry_that_yanks_every_release_installs_only_a_pin(
    index: Index, home: Home, run: Callable[..., Result]
) -> None:
    def withdraw(repo: IndexRepo) -> None:
        for version in HOSTS:
            repo.yank("hosts", version, reason="withdrawn")
        repo.publish()

    index.do(withdraw)
    with pytest.raises(ResolutionError, match="every release of hosts that satisfies") as e:
        install(home, "hosts")
    assert "pin one to take it anyway, e.g. hosts==2.0.0" in str(e.value)
    assert installed(home) == {}
    info = run("info", "hosts", home=home.root)
    assert "every release is yanked; newest: 2.0.0 (any) (yanked: withdrawn)" in info.output
    assert "warning: hosts 1.0.0 is yanked: withdrawn" in install(home, "hosts==1.0.0")


def test_resolution_with_yanked_releases() -> None:
    def cand(name: str, version: str, yanked: bool = False, **requires: str) -> Candidate:
        deps = tuple((n, SpecifierSet(s)) for n, s in requires.items())
        return Candidate(name, Version(version), deps, yanked=yanked)

    available = {
        "hosts": [cand("hosts", "1.0"), cand("hosts", "2.0", allowlist="==1.5")],
        "allowlist": [cand("allowlist", "1.0"), cand("allowlist", "1.5", yanked=True)],
    }
    # a range never takes a yanked release; a plugin's exact pin does
    assert resolve([("allowlist", SpecifierSet(">=1"))], available)["allowlist"].version == Version(
        "1.0"
    )
    chosen = resolve([("hosts", SpecifierSet())], available)
    assert chosen["allowlist"].version == Version("1.5")
    # a wildcard is no pin; an installed dependency at a yanked version is kept
    with pytest.raises(ResolutionError, match="yanked"):
        resolve([("allowlist", SpecifierSet("==1.5.*"))], available)
    kept = resolve(
        [("hosts", SpecifierSet("==1.0")), ("allowlist", SpecifierSet())],
        available,
        installed={"allowlist": Version("1.5")},
    )
    assert kept["allowlist"].version == Version("1.0")  # asked for: newest not yanked
    assert resolve(
        [("hosts", SpecifierSet("==2.0"))], available, installed={"allowlist": Version("1.5")}
    )["allowlist"].version == Version("1.5")


# -- a hostile registry's yank fields -----------------------------------------------------------


def _custom(**extra: Any) -> dict[str, Any]:
    return {
        "name": "hosts", "version": "1.0.0", "platform": "any", "types": ["resolver"],
        "requires": {}, "description": "d", "publisher": "p", "publisher_key_id": "a" * 64,
        "manifest": "hosts/1.0.0/any/manifest.dsse.json", **extra,
    }  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [
        {"yanked": "true"},
        {"yanked": 1},
        {"yanked": None},
        {"yanked": True, "yanked_reason": 5},
        {"yanked": True, "yanked_reason": "\x1b[31mred"},
        {"yanked": True, "yanked_reason": "x" * 201},
    ],
)
def test_a_yank_field_of_the_wrong_type_is_refused(extra: dict[str, Any]) -> None:
    artifact = TargetInfo("hosts/1.0.0/any/hosts.pyz", 1, {"sha256": "a" * 64}, _custom(**extra))
    manifest = TargetInfo("hosts/1.0.0/any/manifest.dsse.json", 1, {"sha256": "b" * 64})
    with pytest.raises(StrictJSONError, match="yanked"):
        _release(artifact, manifest, where="test")


def test_unknown_custom_fields_are_ignored_as_before() -> None:
    artifact = TargetInfo(
        "hosts/1.0.0/any/hosts.pyz", 1, {"sha256": "a" * 64}, _custom(yanked_by="someone")
    )
    manifest = TargetInfo("hosts/1.0.0/any/manifest.dsse.json", 1, {"sha256": "b" * 64})
    assert _release(artifact, manifest, where="test").yanked is False


def test_a_registry_whose_yank_flag_is_a_string_loses_that_release(
    index: Index, home: Home
) -> None:
    def tamper(repo: IndexRepo) -> None:  # what a holder of the online keys can sign
        targets = repo._edit_targets("targets")
        listing = targets.targets["hosts/releases.json"]
        entries = listing.custom["releases"]
        entries[-1]["artifact"]["custom"]["yanked"] = "false"
        targets.targets["hosts/releases.json"] = TargetFile(
            listing.length, dict(listing.hashes), listing.path, {"custom": {"releases": entries}}
        )
        repo._flush()
        repo.publish()

    index.do(tamper)
    (client,) = open_clients(home, lambda _: None)
    assert [r.version for r in client.find("hosts")] == ["1.0.0", "1.2.0"]
    assert any('"yanked" must be' in w for w in client.warnings), client.warnings
    install(home, "hosts")
    assert installed(home) == {"hosts": "1.2.0"}


# -- remove ----------------------------------------------------------------------------------


def test_remove_before_publish(index: Index, run: Callable[..., Result], tmp_path: Path) -> None:
    index.do(lambda repo: repo.add_releases([release("hosts", "3.0.0", index.publisher)]))
    r = run("index", "remove", "--repo", str(index.path), "hosts", "3.0.0")
    assert r.exit_code == 0 and r.output.startswith("removed hosts 3.0.0 (2 target(s))"), r.output
    index.do(lambda repo: repo.publish())
    client = RegistryClient("t", index.server.url, tmp_path / "cache", index.root)
    assert [r.version for r in client.find("hosts")] == list(HOSTS)
    # never published: the version may come back
    index.do(lambda repo: repo.add_releases([release("hosts", "3.0.0", index.publisher)]))


def test_removing_a_published_release_is_refused_unless_forced(
    index: Index, run: Callable[..., Result], tmp_path: Path
) -> None:
    before = {p.name: p.read_bytes() for p in (index.path / "metadata").glob("*.json")}
    r = run("index", "remove", "--repo", str(index.path), "hosts", "2.0.0")
    assert r.exit_code == 1
    assert "published releases are yanked, not removed: clients may have it pinned" in r.output
    assert {p.name: p.read_bytes() for p in (index.path / "metadata").glob("*.json")} == before
    r = run("index", "remove", "--repo", str(index.path), "hosts", "2.0.0", "--force")
    assert r.exit_code == 0, r.output
    index.do(lambda repo: repo.publish())
    client = RegistryClient("t", index.server.url, tmp_path / "cache", index.root)
    assert [r.version for r in client.find("hosts")] == ["1.0.0", "1.2.0"]
    with pytest.raises(IndexRepoError, match="retired and never used again"):
        index.do(lambda repo: repo.add_releases([release("hosts", "2.0.0", index.publisher)]))
    # the last version of a plugin takes its release list with it
    index.do(lambda repo: repo.add_releases([release("lone", "1.0", index.publisher)]))
    index.do(lambda repo: repo.remove_release("lone", "1.0"))
    assert index.do(lambda repo: repo._lookup("lone/releases.json")) is None


# -- gc --------------------------------------------------------------------------------------


def test_gc_deletes_only_what_no_recent_snapshot_references(
    index: Index, run: Callable[..., Result], tmp_path: Path
) -> None:
    base = datetime.now(UTC)
    index.do(lambda repo: repo.add_releases([release("hosts", "3.0.0", index.publisher)]))
    index.do(lambda repo: repo.publish(now=base + timedelta(hours=1)))
    index.do(lambda repo: repo.yank("hosts", "1.0.0"))
    index.do(lambda repo: repo.rotate("root"))
    index.do(lambda repo: repo.remove_release("hosts", "3.0.0", force=True))
    index.do(lambda repo: repo.publish(now=base + timedelta(hours=2)))
    within = index.do(lambda repo: repo.gc(now=base + timedelta(days=3)))
    assert within.kept_snapshots == [1, 2, 3]
    # only the release list yank wrote and remove replaced before any publish
    assert [p.split("/")[0] for p in within.deleted] == ["blobs"]
    later = base + timedelta(days=8)
    before = published_bytes(index)
    dry = index.do(lambda repo: repo.gc(now=later, dry_run=True))
    assert published_bytes(index) == before and dry.dry_run
    done = index.do(lambda repo: repo.gc(now=later))
    assert done.deleted == dry.deleted and done.bytes_freed == dry.bytes_freed > 0
    assert done.kept_snapshots == [3]
    assert "published/metadata/1.snapshot.json" in done.deleted
    assert "published/metadata/2.targets.json" in done.deleted
    assert any(p.startswith("published/targets/hosts/3.0.0/") for p in done.deleted)
    assert any(p.startswith("blobs/") for p in done.deleted)  # old releases.json, 3.0.0
    assert not any("root" in p for p in done.deleted)
    names = {p.name for p in (index.published / "metadata").iterdir()}
    assert {"1.root.json", "2.root.json", "root.json", "timestamp.json"} <= names
    assert not (index.published / "targets" / "hosts" / "3.0.0").exists()
    assert read_back(index.path).releases == 3
    client = RegistryClient("t", index.server.url, tmp_path / "cache", index.root)
    (newest,) = [r for r in client.find("hosts") if r.version == "2.0.0"]
    client.download(newest.artifact, tmp_path / "dl")
    r = run("index", "gc", "--repo", str(index.path), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["deleted"] == [], r.output


def test_a_client_that_refreshed_before_gc_still_finds_its_files(tmp_path: Path) -> None:
    index = new_index(tmp_path / "repo", hash_bins=4)
    try:
        base = datetime.now(UTC)
        early = RegistryClient("early", index.server.url, tmp_path / "early", index.root)
        early.refresh()  # holds snapshot 1; loads the hash bins only when asked
        index.do(lambda repo: repo.add_releases([release("hosts", "3.0.0", index.publisher)]))
        index.do(lambda repo: repo.publish(now=base + timedelta(hours=1)))
        index.do(lambda repo: repo.gc(now=base + timedelta(days=2)))
        assert [r.version for r in early.find("hosts")] == list(HOSTS)
        late = RegistryClient("late", index.server.url, tmp_path / "late", index.root)
        late.refresh()  # holds snapshot 2, the current one
        done = index.do(lambda repo: repo.gc(now=base + timedelta(days=9)))
        assert "published/metadata/1.snapshot.json" in done.deleted
        (three,) = [r for r in late.find("hosts") if r.version == "3.0.0"]
        late.download(three.artifact, tmp_path / "dl")
        stale = RegistryClient("stale", index.server.url, tmp_path / "early", index.root)
        assert len(stale.find("hosts")) == 4  # a refresh moves on to what is kept
    finally:
        index.server.close()


def test_gc_waits_for_a_command_holding_the_repository(
    index: Index, run: Callable[..., Result]
) -> None:
    with IndexRepo.open(index.path, passphrase=PASSPHRASE) as busy:
        busy.add_releases([release("hosts", "3.0.0", index.publisher)])
        r = run("index", "gc", "--repo", str(index.path), "--grace-days", "0")
        assert r.exit_code == 1
        assert "another pm-plugins index command is working on" in r.output
        busy.publish()
    assert (index.published / "metadata" / "2.snapshot.json").is_file()


def test_gc_keeps_what_an_interrupted_publish_wrote(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(repo: IndexRepo) -> None:
        def replace(filename: str, data: bytes) -> None:
            if filename == "timestamp.json":
                raise OSError("disk full")
            real(filename, data)

        real = repo.tree.replace
        monkeypatch.setattr(repo.tree, "replace", replace)
        repo.add_releases([release("hosts", "3.0.0", index.publisher)])
        with pytest.raises(OSError):
            repo.publish()

    index.do(crash)
    assert (index.published / "metadata" / "2.snapshot.json").is_file()
    written = published_bytes(index)
    done = index.do(lambda repo: repo.gc(grace_days=0, now=datetime.now(UTC) + timedelta(days=30)))
    assert done.kept_snapshots == [1, 2]
    assert published_bytes(index) == written
    index.do(lambda repo: repo.publish())
    assert read_back(index.path).releases == 4


def test_gc_without_a_readable_history_keeps_old_snapshots(index: Index) -> None:
    index.do(lambda repo: repo.add_releases([release("hosts", "3.0.0", index.publisher)]))
    index.do(lambda repo: repo.publish())
    for text in (None, "not json"):
        history = index.path / HISTORY_FILE
        if text is None:
            history.unlink()
        else:
            history.write_text(text)
        done = index.do(lambda repo: repo.gc(now=datetime.now(UTC) + timedelta(days=60)))
        assert done.kept_snapshots == [1, 2]
        assert not any(p.startswith("published/") for p in done.deleted)


# -- what add checks ---------------------------------------------------------------------------


def test_add_refuses_a_host_modules_name(index: Index, tmp_path: Path) -> None:
    pkg = make_package(tmp_path, "firewall", "1.0.0", index.publisher)
    with pytest.raises(IndexRepoError, match="firewall is the name of a host module"):
        index.do(lambda repo: release_from_package(pkg, repo))
    with pytest.raises(IndexRepoError, match="firewall is the name of a host module"):
        index.do(lambda repo: repo.add_releases([release("firewall", "1.0", index.publisher)]))
    with pytest.raises(IndexRepoError, match="resolver is the name of a host module"):
        index.do(lambda repo: repo.add_publisher(index.publisher.public_key(), ["resolver"]))


def test_add_refuses_a_package_no_known_key_signed(
    index: Index, run: Callable[..., Result], tmp_path: Path
) -> None:
    stranger = ed25519.generate()
    pkg = make_package(tmp_path / "a", "allowlist", "1.0.0", stranger)
    fresh = tmp_path / "fresh"
    assert run("index", "init", "--repo", str(fresh)).exit_code == 0
    r = run("index", "add", "--repo", str(fresh), str(pkg))
    assert r.exit_code == 1
    kid = ed25519.key_id(stranger)[:16]
    assert f"package allowlist 1.0.0 ({pkg}/manifest.dsse.json) is signed by key {kid}" in r.output
    assert "the index knows no publisher key for allowlist" in r.output
    other = ed25519.public_key_to_text(ed25519.generate().public_key())
    r = run("index", "publishers", "add", "--repo", str(fresh), "--key", other,
            "--plugins", "allowlist")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run("index", "add", "--repo", str(fresh), str(pkg))
    assert r.exit_code == 1
    assert "and none of them is one of the publisher keys this index knows for allowlist" in (
        r.output
    )
    key_text = ed25519.public_key_to_text(stranger.public_key())
    r = run("index", "publishers", "add", "--repo", str(fresh), "--key", key_text,
            "--plugins", "hosts", "--label", "Stranger")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run("index", "add", "--repo", str(fresh), str(pkg))
    assert r.exit_code == 1 and "none of them is one of the publisher keys" in r.output
    r = run("index", "publishers", "add", "--repo", str(fresh), "--key", key_text,
            "--plugins", "allowlist")  # fmt: skip
    assert r.output.strip() == f"publisher key {kid} may sign hosts, allowlist"
    r = run("index", "add", "--repo", str(fresh), str(pkg))
    assert r.exit_code == 0, r.output
    listed = json.loads(run("index", "publishers", "list", "--repo", str(fresh), "--json").stdout)
    assert sorted((p["label"], p["plugins"]) for p in listed) == [
        ("", ["allowlist"]),
        ("Stranger", ["hosts", "allowlist"]),
    ]
    r = run("index", "publishers", "remove", "--repo", str(fresh), kid)
    assert r.exit_code == 0, r.output
    pkg2 = make_package(tmp_path / "b", "allowlist", "1.1.0", stranger)
    assert run("index", "add", "--repo", str(fresh), str(pkg2)).exit_code == 1


def test_add_takes_a_delegated_publishers_key_for_its_paths_only(
    index: Index, tmp_path: Path
) -> None:
    alice = ed25519.generate()
    index.do(lambda repo: repo.delegate("alice", alice.public_key(), ["alpha"]))
    pkg = make_package(tmp_path / "a", "alpha", "1.0.0", alice)
    added = index.do(
        lambda repo: repo.add_releases([release_from_package(pkg, repo)], publisher_keys=[alice])
    )
    assert added[0].role == "publisher-alice"
    beta = make_package(tmp_path / "b", "beta", "1.0.0", alice)
    with pytest.raises(IndexRepoError, match=r"is signed by key .*none of them is one of"):
        index.do(lambda repo: release_from_package(beta, repo))  # "*" is index.publisher's
    by_index = make_package(tmp_path / "c", "alpha", "1.1.0", index.publisher)
    with pytest.raises(IndexRepoError, match="none of them is one of role publisher-alice"):
        index.do(lambda repo: release_from_package(by_index, repo))


def _envelope(payload: bytes, keys: list[Ed25519PrivateKey], lead: bytes | None = None) -> bytes:
    doc = dsse.sign(payload, PAYLOAD_TYPE, keys)
    if lead is not None:  # an entry by a key nobody knows, before the real ones
        doc["signatures"].insert(0, json.loads(lead)["signatures"][0])
    return dsse.envelope_to_bytes(doc)


def test_an_unknown_key_beside_a_known_one(index: Index, tmp_path: Path) -> None:
    stranger, alice, bob = ed25519.generate(), ed25519.generate(), ed25519.generate()
    pkg = make_package(tmp_path / "a", "hosts", "5.0.0", index.publisher)
    envelope = pkg / "manifest.dsse.json"
    payload = dsse.envelope_from_bytes(envelope.read_bytes()).payload
    lead = _envelope(payload, [stranger])
    envelope.write_bytes(_envelope(payload, [index.publisher], lead))
    info = index.do(lambda repo: release_from_package(pkg, repo))
    assert info.custom["publisher_key_id"] == ed25519.key_id(index.publisher)  # not the stranger

    def two_of_two(repo: IndexRepo) -> None:  # a publisher role needing two signatures
        repo.delegate("duo", alice.public_key(), ["pair"], publisher_key=alice)
        top = repo._edit_targets("targets")
        assert top.delegations is not None and top.delegations.roles is not None
        top.delegations.keys[ed25519.key_id(bob)] = tuf_key(bob)
        top.delegations.roles["publisher-duo"].keyids.append(ed25519.key_id(bob))
        top.delegations.roles["publisher-duo"].threshold = 2
        repo._flush()

    index.do(two_of_two)
    pair = make_package(tmp_path / "p", "pair", "1.0.0", alice)
    pair_env = pair / "manifest.dsse.json"
    pair_payload = dsse.envelope_from_bytes(pair_env.read_bytes()).payload
    pair_env.write_bytes(_envelope(pair_payload, [alice], _envelope(pair_payload, [stranger])))
    with pytest.raises(IndexRepoError) as e:
        index.do(lambda repo: release_from_package(pair, repo))
    assert str(e.value).endswith("1 of them verify as role publisher-duo, which needs 2")
    assert ed25519.key_id(stranger)[:16] in str(e.value)
    pair_env.write_bytes(_envelope(pair_payload, [alice, bob]))
    assert index.do(lambda repo: release_from_package(pair, repo)).name == "pair"


# -- what publish refuses ----------------------------------------------------------------------


def _hostile_role(index: Index, alice: Ed25519PrivateKey, target: str, signer: Any) -> None:
    """Alice writes her own role's metadata, listing `target`, as she may sign it."""
    file = index.path / "metadata" / "publisher-alice.json"
    md = Metadata[Targets].from_bytes(file.read_bytes())
    md.signed.version += 1
    md.signed.targets[target] = TargetFile(3, {"sha256": "c" * 64}, target)
    md.signatures.clear()
    md.sign(signer)
    file.write_bytes(md.to_bytes())


def test_publish_refuses_a_publisher_role_outside_its_paths(
    index: Index, run: Callable[..., Result], tmp_path: Path
) -> None:
    alice = ed25519.generate()
    index.do(lambda repo: repo.delegate("alice", alice.public_key(), ["alpha"]))
    index.do(
        lambda repo: repo.add_releases([release("alpha", "1.0", alice)], publisher_keys=[alice])
    )
    index.do(lambda repo: repo.publish())
    before = published_bytes(index)
    role_file = index.path / "metadata" / "publisher-alice.json"
    signed_by_alice = role_file.read_bytes()
    _hostile_role(index, alice, "hosts/9.9.9/any/hosts.pyz", tuf_signer(alice))
    r = run("index", "publish", "--repo", str(index.path))
    assert r.exit_code == 1
    assert (
        "role publisher-alice lists target hosts/9.9.9/any/hosts.pyz, outside its delegated"
        " paths (alpha/*, alpha/*/*/*); nothing was published"
    ) in r.output
    assert published_bytes(index) == before
    # within its paths, but signed by a key that is not alice's
    role_file.write_bytes(signed_by_alice)
    _hostile_role(index, alice, "alpha/1.1/any/alpha.pyz", tuf_signer(ed25519.generate()))
    r = run("index", "publish", "--repo", str(index.path))
    assert r.exit_code == 1
    assert "role publisher-alice is not signed by enough of its publisher's keys" in r.output
    assert published_bytes(index) == before


def test_publish_refuses_a_publisher_role_that_rolls_back_or_delegates(
    index: Index, run: Callable[..., Result]
) -> None:
    alice = ed25519.generate()
    index.do(lambda repo: repo.delegate("alice", alice.public_key(), ["alpha"]))

    def two_publishes(repo: IndexRepo) -> None:
        for version in ("1.0", "1.1"):
            repo.add_releases([release("alpha", version, alice)], publisher_keys=[alice])
            repo.publish()

    index.do(two_publishes)
    role_file = index.path / "metadata" / "publisher-alice.json"
    good = role_file.read_bytes()
    before = published_bytes(index)

    def forged(change: Callable[[Metadata[Targets]], None]) -> str:
        md = Metadata[Targets].from_bytes(good)
        change(md)
        md.signatures.clear()
        md.sign(tuf_signer(alice))
        role_file.write_bytes(md.to_bytes())
        r = run("index", "publish", "--repo", str(index.path))
        assert r.exit_code == 1 and published_bytes(index) == before
        return r.output

    def back(md: Metadata[Targets]) -> None:
        md.signed.version = 1

    def same_version(md: Metadata[Targets]) -> None:
        md.signed.targets["alpha/9/any/a.pyz"] = TargetFile(
            1, {"sha256": "d" * 64}, "alpha/9/any/a.pyz"
        )

    def delegating(md: Metadata[Targets]) -> None:
        md.signed.version += 1
        md.signed.delegations = Delegations(keys={}, roles={})

    assert "role publisher-alice goes back from version 2 to 1" in forged(back)
    assert "changed but kept its published version 2" in forged(same_version)
    assert "delegates to roles of its own" in forged(delegating)
    role_file.write_bytes(good)
    assert run("index", "publish", "--repo", str(index.path)).exit_code == 0


def test_yanking_a_delegated_plugin_takes_its_publishers_key(index: Index) -> None:
    alice = ed25519.generate()
    index.do(lambda repo: repo.delegate("alice", alice.public_key(), ["alpha"]))
    index.do(
        lambda repo: repo.add_releases([release("alpha", "1.0", alice)], publisher_keys=[alice])
    )
    with pytest.raises(IndexRepoError, match="--publisher-key"):
        index.do(lambda repo: repo.yank("alpha", "1.0"))
    assert index.do(lambda repo: repo.yank("alpha", "1.0", publisher_keys=[alice]))
    index.do(lambda repo: repo.publish())
    assert read_back(index.path).warnings == []


def test_gc_that_cannot_read_a_kept_file_deletes_nothing(index: Index) -> None:
    index.do(lambda repo: repo.add_releases([release("hosts", "3.0.0", index.publisher)]))
    index.do(lambda repo: repo.publish())
    (index.published / "metadata" / "1.targets.json").write_text("{")
    before = published_bytes(index)
    with pytest.raises(IndexRepoError, match=r"1\.targets\.json is not TUF metadata"):
        index.do(lambda repo: repo.gc(now=datetime.now(UTC) + timedelta(days=1)))
    assert published_bytes(index) == before
