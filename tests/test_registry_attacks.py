"""Attacks on the registry's newer parts: yank, gc, who may add, offline keys, S3 push.

Each test passes when the defence holds. The attackers: a hostile registry (it signs what
its online keys may sign), a hostile publisher, a co-maintainer with write access to the
repository (or the top-level targets key), and a hostile bucket. Real keys, real TUF
metadata, real HTTP on 127.0.0.1 (tests.tuf_helpers.IndexServer), real installs; the S3
attacks run against the real versitygw server of tests/s3_server.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from tuf.api.metadata import Metadata, Root, TargetFile, Targets  # type: ignore[attr-defined]

from cli.main import cli as main_cli
from index import IndexRepo, IndexRepoError, S3Location, push
from index.gc import HISTORY_FILE
from index.intake import release_from_package
from index.keyring import tuf_key
from index.publishers import PUBLISHERS_FILE
from index.staging import read_metadata, sign_file
from keys import dsse, ed25519
from loader.home import Home
from registry_client.readback import read_back
from registry_client.registry_install import open_clients
from registry_client.replacing import ReplaceRefused
from registry_client.resolve import ResolutionError
from registry_client.tuf_client import RegistryClient, RegistryError
from tests.s3_server import S3Server, build_versitygw
from tests.test_index_keys import PASS as ROLE_PASS
from tests.test_index_keys import Asked, offline_repo, root_keys
from tests.test_index_lifecycle import (
    Index,
    install,
    installed,
    make_home,
    new_index,
    published_bytes,
)
from tests.tuf_helpers import PASSPHRASE, PAYLOAD_TYPE, make_package, release


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    made = new_index(tmp_path / "repo")
    yield made
    made.server.close()


@pytest.fixture
def home(tmp_path: Path, index: Index) -> Home:
    return make_home(tmp_path / "home", index)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    monkeypatch.setenv(ed25519.PASSPHRASE_ENV, PASSPHRASE.decode())

    def invoke(*args: str, home: Path | None = None) -> Result:
        where = home or tmp_path / "scratch-home"
        return CliRunner().invoke(main_cli, ["--home", str(where), *args])

    return invoke


def _rewrite_releases(repo: IndexRepo, name: str, change: Callable[[list[Any]], None]) -> None:
    """What a holder of the online targets key can sign: the release list of `name`, its
    entries changed by `change` (the artifact targets are left as they are)."""
    role = repo._role_for(f"{name}/releases.json")
    targets = repo._edit_targets(role)
    listing = targets.targets[f"{name}/releases.json"]
    entries = listing.custom["releases"]
    change(entries)
    targets.targets[listing.path] = TargetFile(
        listing.length, dict(listing.hashes), listing.path, {"custom": {"releases": entries}}
    )
    repo._flush()


def _entry(entries: list[Any], version: str) -> dict[str, Any]:
    (found,) = [e for e in entries if e["artifact"]["custom"]["version"] == version]
    return dict(found["artifact"]["custom"])


def _set_custom(entries: list[Any], version: str, **fields: Any) -> None:
    for e in entries:
        if e["artifact"]["custom"]["version"] == version:
            e["artifact"]["custom"].update(fields)


# -- 1. yank -----------------------------------------------------------------------------------


def test_yanking_all_but_an_older_release_never_moves_an_install_down(
    index: Index, home: Home
) -> None:
    """A hostile registry yanks 2.0.0 and 1.2.0 to push everyone onto 1.0.0."""
    index.do(
        lambda repo: repo.add_releases(
            [release("allowlist", "1.0.0", index.publisher,
                     requires={"host": [], "plugins": {"hosts": ">=1"}})]
        )
    )  # fmt: skip
    index.do(lambda repo: repo.publish())
    install(home, "hosts")
    assert installed(home) == {"hosts": "2.0.0"}

    def push_down(repo: IndexRepo) -> None:
        for version in ("2.0.0", "1.2.0"):
            repo.yank("hosts", version, reason="use 1.0.0")
        repo.publish()

    index.do(push_down)
    with pytest.raises(ReplaceRefused, match=r"downgrade hosts from 2\.0\.0 to 1\.0\.0"):
        install(home, "hosts")
    lines = install(home, "hosts", upgrade=True)
    assert "keeping hosts 2.0.0: its newest release there is 1.0.0" in lines[-1]
    install(home, "allowlist")  # a range on hosts keeps the installed (yanked) hosts
    assert installed(home) == {"hosts": "2.0.0", "allowlist": "1.0.0"}
    with pytest.raises(ResolutionError, match="yanked"):
        install(home, "hosts>=1.1")  # a range never takes a yanked release


def test_the_release_list_decides_a_yank_the_artifact_target_does_not(
    index: Index, home: Home, run: Callable[..., Result]
) -> None:
    """The artifact target's custom and releases.json disagree: the release list (what the
    client resolves and downloads with, one hash bin) wins everywhere a version is chosen."""

    def disagree(repo: IndexRepo) -> None:
        repo.yank("hosts", "2.0.0", reason="bad")  # both say yanked ...
        _rewrite_releases(repo, "hosts", swap)  # ... then the list says otherwise
        repo.publish()

    def swap(entries: list[Any]) -> None:  # 1.2.0 yanked, 2.0.0 not
        _set_custom(entries, "2.0.0", yanked=False, yanked_reason="")
        _set_custom(entries, "1.2.0", yanked=True, yanked_reason="listed")

    index.do(disagree)
    (client,) = open_clients(home, lambda _: None)
    assert {r.version: r.yanked for r in client.find("hosts")} == {
        "1.0.0": False, "1.2.0": True, "2.0.0": False,
    }  # fmt: skip
    info = json.loads(run("info", "hosts", "--json", home=home.root).stdout)
    assert {d["version"]: d["yanked"] for d in info}["1.2.0"] is True
    install(home, "hosts>=1,<2")
    assert installed(home) == {"hosts": "1.0.0"}  # 1.2.0 is yanked by the list


_ESCAPES = "\x1b]2;owned\x07\x1b[2J"


@pytest.mark.parametrize("reason", [_ESCAPES, "\u202eevil", "x" * 100_000, "ok\nline"])
def test_a_hostile_yank_reason_never_reaches_the_terminal(
    index: Index, home: Home, run: Callable[..., Result], reason: str
) -> None:
    def hostile(repo: IndexRepo) -> None:
        _rewrite_releases(
            repo, "hosts", lambda es: _set_custom(es, "2.0.0", yanked=True, yanked_reason=reason)
        )
        repo.publish()

    index.do(hostile)
    (client,) = open_clients(home, lambda _: None)
    assert [r.version for r in client.find("hosts")] == ["1.0.0", "1.2.0"]  # dropped
    assert any("yanked_reason" in w for w in client.warnings)
    assert all(w.isprintable() and len(w) < 400 for w in client.warnings)
    for args in (("info", "hosts"), ("search", "hosts"), ("install", "hosts==2.0.0")):
        r = run(*args, home=home.root)
        assert "\x1b" not in r.output and "\u202e" not in r.output and len(r.output) < 5000
    assert installed(home) == {}
    # and the maintainer's own tool refuses to sign such a reason
    with pytest.raises(IndexRepoError, match="printable"):
        index.do(lambda repo: repo.yank("hosts", "1.0.0", reason=_ESCAPES))
    with pytest.raises(IndexRepoError, match="200 at most"):
        index.do(lambda repo: repo.yank("hosts", "1.0.0", reason="x" * 201))


def _delegated_alpha(index: Index) -> ed25519.Ed25519PrivateKey:
    alice = ed25519.generate()
    index.do(lambda repo: repo.delegate("alice", alice.public_key(), ["alpha"]))
    index.do(
        lambda repo: repo.add_releases(
            [release("alpha", v, alice) for v in ("1.0", "1.1")], publisher_keys=[alice]
        )
    )
    index.do(lambda repo: repo.publish())
    return alice


def _top_level_yank(repo: IndexRepo) -> None:
    """A co-maintainer with the top-level targets key lists alpha's release list itself,
    1.1 yanked (TUF looks at the delegator's own targets before its delegations)."""
    theirs = repo._targets_md("publisher-alice").signed.targets["alpha/releases.json"]
    entries = json.loads(json.dumps(theirs.custom["releases"]))
    _set_custom(entries, "1.1", yanked=True, yanked_reason="by the index")
    top = repo._edit_targets("targets")
    top.targets[theirs.path] = TargetFile(
        theirs.length, dict(theirs.hashes), theirs.path, {"custom": {"releases": entries}}
    )
    repo._flush()


def test_publish_refuses_a_top_level_entry_for_a_delegated_plugin(
    index: Index, run: Callable[..., Result]
) -> None:
    _delegated_alpha(index)
    before = published_bytes(index)
    index.do(_top_level_yank)
    r = run("index", "publish", "--repo", str(index.path))
    assert r.exit_code == 1
    assert (
        "targets lists alpha/releases.json, which is delegated to role publisher-alice" in r.output
    )
    assert published_bytes(index) == before
    with pytest.raises(IndexRepoError, match="--publisher-key"):  # yank asks for alice's key
        index.do(lambda repo: repo.yank("alpha", "1.1"))


def test_a_client_ignores_a_top_level_entry_for_a_delegated_plugin(
    index: Index, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = _delegated_alpha(index)
    store = home.trust_store
    from keys.store import TrustStore

    trust = TrustStore.load(store)
    trust.trust(alice.public_key(), "community", "alice")
    trust.save(store)
    index.do(_top_level_yank)
    # the co-maintainer's own tool: publish without the check
    monkeypatch.setattr("index.publishing.check_roles", lambda repo: None)
    index.do(lambda repo: repo.publish())
    (client,) = open_clients(home, lambda _: None)
    assert client.find("alpha") == []
    assert any(
        "alpha/releases.json is delegated to role publisher-alice" in w for w in client.warnings
    ), client.warnings
    with pytest.raises(ResolutionError):
        install(home, "alpha")
    assert installed(home) == {}


# -- 2. gc -------------------------------------------------------------------------------------


def _three_publishes(index: Index) -> datetime:
    base = datetime.now(UTC)
    for n, version in enumerate(("3.0.0", "4.0.0"), 1):
        with IndexRepo.open(index.path, passphrase=PASSPHRASE) as repo:
            repo.add_releases([release("hosts", version, index.publisher)])
            repo.publish(now=base + timedelta(hours=n))
    return base


def _gc_much_later(repo: IndexRepo) -> Any:
    return repo.gc(grace_days=0, now=datetime.now(UTC) + timedelta(days=30))


@pytest.mark.parametrize(
    "history",
    [
        {"format": 1, "snapshots": {str(v): "2000-01-01T00:00:00Z" for v in range(1, 50)}},
        {"format": 1, "snapshots": {"1": "2000-01-01T00:00:00Z", "3": "1999-01-01T00:00:00Z"}},
        {"format": 1, "snapshots": {"-5": "2000-01-01T00:00:00Z", "999999": "x"}},
        {"format": 1, "snapshots": []},
    ],
)
def test_a_crafted_history_never_makes_gc_delete_the_current_index(
    index: Index, tmp_path: Path, history: dict[str, Any]
) -> None:
    _three_publishes(index)
    (index.path / HISTORY_FILE).write_text(json.dumps(history))
    index.do(lambda repo: repo.gc(grace_days=0, now=datetime.now(UTC) + timedelta(days=400)))
    assert read_back(index.path).releases == 5
    fresh = make_home(tmp_path / "fresh", index)
    install(fresh, "hosts")
    assert installed(fresh) == {"hosts": "4.0.0"}
    names = {p.name for p in (index.published / "metadata").iterdir()}
    assert {"1.root.json", "root.json", "timestamp.json", "3.snapshot.json"} <= names


def test_gc_never_follows_a_symlink_out_of_the_repository(index: Index, tmp_path: Path) -> None:
    _three_publishes(index)
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    precious = {
        outside / "file.pyz": b"keep me",
        outside / "dir" / "inner.json": b"and me",
        outside / "1.targets.json": b"me too",
    }
    for path, data in precious.items():
        path.write_bytes(data)
    targets = index.published / "targets"
    (targets / "hosts" / ("0" * 64 + ".old.pyz")).symlink_to(outside / "file.pyz")
    (targets / "elsewhere").symlink_to(outside / "dir")
    old_meta = index.published / "metadata" / "1.targets.json"
    old_meta.unlink()
    old_meta.symlink_to(outside / "1.targets.json")
    (index.path / "blobs" / ("f" * 64)).symlink_to(outside / "file.pyz")
    later = datetime.now(UTC) + timedelta(days=30)
    index.do(lambda repo: repo.gc(grace_days=0, now=later))
    assert {p: p.read_bytes() for p in precious} == precious


def test_gc_of_a_symlinked_targets_folder_deletes_nothing_through_it(
    index: Index, tmp_path: Path
) -> None:
    """published/targets (or blobs) replaced by a link to a folder outside the repository:
    gc must not walk it and delete every file there no snapshot lists."""
    _three_publishes(index)
    for folder in (index.published / "targets", index.path / "blobs"):
        outside = tmp_path / f"outside-{folder.name}"
        shutil.copytree(folder, outside)
        (outside / "notes.txt").write_text("someone else's file")
        shutil.rmtree(folder)
        folder.symlink_to(outside)
        before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
        with pytest.raises(IndexRepoError, match="symbolic link"):
            index.do(_gc_much_later)
        assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before
        folder.unlink()
        shutil.copytree(outside, folder)
        (folder / "notes.txt").unlink()


def test_gc_keeps_a_target_shared_with_a_release_that_stays(index: Index, tmp_path: Path) -> None:
    same = b"one executable, two versions"
    index.do(
        lambda repo: repo.add_releases(
            [release("twin", v, index.publisher, artifact=same) for v in ("1.0", "1.1")]
        )
    )
    index.do(lambda repo: repo.publish())
    index.do(lambda repo: repo.remove_release("twin", "1.1", force=True))
    index.do(lambda repo: repo.publish())
    done = index.do(lambda repo: repo.gc(grace_days=0, now=datetime.now(UTC) + timedelta(days=30)))
    assert any("twin/1.1/" in p for p in done.deleted)
    client = RegistryClient("t", index.server.url, tmp_path / "cache", index.root)
    (kept,) = client.find("twin")
    assert client.download(kept.artifact, tmp_path / "dl").read_bytes() == same
    client.download(kept.manifest, tmp_path / "dl")


# -- 3. who may add a package ------------------------------------------------------------------


def _sign_twice(folder: Path, key: ed25519.Ed25519PrivateKey) -> None:
    envelope = folder / "manifest.dsse.json"
    payload = dsse.envelope_from_bytes(envelope.read_bytes()).payload
    doc = dsse.sign(payload, PAYLOAD_TYPE, [key])
    doc["signatures"] = doc["signatures"] * 2  # the same key, twice
    envelope.write_bytes(dsse.envelope_to_bytes(doc))


def test_one_key_twice_does_not_meet_a_threshold_of_two(index: Index, tmp_path: Path) -> None:
    alice, bob = ed25519.generate(), ed25519.generate()

    def two_of_two(repo: IndexRepo) -> None:
        repo.delegate("duo", alice.public_key(), ["pair"], publisher_key=alice)
        top = repo._edit_targets("targets")
        assert top.delegations is not None and top.delegations.roles is not None
        top.delegations.keys[ed25519.key_id(bob)] = tuf_key(bob)
        top.delegations.roles["publisher-duo"].keyids.append(ed25519.key_id(bob))
        top.delegations.roles["publisher-duo"].threshold = 2
        repo._flush()

    index.do(two_of_two)
    pkg = make_package(tmp_path / "p", "pair", "1.0.0", alice)
    _sign_twice(pkg, alice)
    with pytest.raises(IndexRepoError, match="1 of them verify as role publisher-duo, which needs"):
        index.do(lambda repo: release_from_package(pkg, repo))


def test_a_key_for_any_name_cannot_sign_a_delegated_one(index: Index, tmp_path: Path) -> None:
    alice = ed25519.generate()
    index.do(lambda repo: repo.delegate("alice", alice.public_key(), ["alpha"]))
    pkg = make_package(tmp_path / "a", "alpha", "1.0.0", index.publisher)  # the "*" key
    with pytest.raises(IndexRepoError, match="none of them is one of role publisher-alice"):
        index.do(lambda repo: release_from_package(pkg, repo))


@pytest.mark.parametrize(
    "name", ["Hosts", "HOSTS", "h\u043ests", "hosts\u200b", "\uff48osts", "hosts ", "hosts/x"]
)
def test_names_differing_by_case_or_unicode_grant_nothing(
    index: Index, tmp_path: Path, name: str
) -> None:
    mallory = ed25519.generate()
    with pytest.raises(IndexRepoError):
        index.do(lambda repo: repo.add_publisher(mallory.public_key(), [name]))
    with pytest.raises(IndexRepoError):
        index.do(lambda repo: repo.delegate("mallory", mallory.public_key(), [name]))
    # written into publishers.json by hand: it still grants no key for "hosts"
    file = index.path / PUBLISHERS_FILE
    doc = json.loads(file.read_bytes())
    doc["keys"] = {
        ed25519.key_id(mallory): {
            "public": ed25519.public_key_to_text(mallory.public_key()),
            "label": "m",
            "plugins": [name],
        }
    }
    file.write_text(json.dumps(doc))
    pkg = make_package(tmp_path / "m", "hosts", "9.0.0", mallory)
    with pytest.raises(IndexRepoError, match="the index knows no publisher key for hosts"):
        index.do(lambda repo: release_from_package(pkg, repo))


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"format": 1, "keys": []},
        {"format": 2, "keys": {}},
        {"format": 1, "keys": {"k": {"public": 5, "label": "", "plugins": []}}},
        {"format": 1, "keys": "KEYID"},
        "MALLORY-PLUGINS",
    ],
)
def test_a_publishers_file_of_the_wrong_shape_is_refused(
    index: Index, tmp_path: Path, doc: Any
) -> None:
    (index.path / PUBLISHERS_FILE).write_text(json.dumps(doc))
    pkg = make_package(tmp_path / "a", "hosts", "9.0.0", index.publisher)
    with pytest.raises(IndexRepoError, match=r"publishers file is damaged|format is not"):
        index.do(lambda repo: release_from_package(pkg, repo))


def test_a_publishers_file_with_a_key_of_another_type_is_refused(
    index: Index, tmp_path: Path
) -> None:
    file = index.path / PUBLISHERS_FILE
    doc = json.loads(file.read_bytes())
    (kid,) = doc["keys"]
    bad_fields: tuple[dict[str, Any], ...] = (
        {"plugins": "*"}, {"plugins": [["*"]]}, {"label": None}, {"public": "AAAA"},
    )  # fmt: skip
    for n, bad in enumerate(bad_fields):
        changed = {**doc, "keys": {kid: {**doc["keys"][kid], **bad}}}
        file.write_text(json.dumps(changed))
        pkg = make_package(tmp_path / str(n), "hosts", "9.0.0", index.publisher)
        with (
            IndexRepo.open(index.path, passphrase=PASSPHRASE) as repo,
            pytest.raises(IndexRepoError, match="damaged"),
        ):
            release_from_package(pkg, repo)


def test_a_symlinked_publishers_file_is_refused(index: Index, tmp_path: Path) -> None:
    """publishers.json decides who may sign what: like a key file, it is not read through a
    link to a file someone else may write."""
    mallory = ed25519.generate()
    elsewhere = tmp_path / "shared" / "publishers.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(
        json.dumps(
            {
                "format": 1,
                "keys": {
                    ed25519.key_id(mallory): {
                        "public": ed25519.public_key_to_text(mallory.public_key()),
                        "label": "m",
                        "plugins": ["*"],
                    }
                },
            }
        )
    )
    file = index.path / PUBLISHERS_FILE
    file.unlink()
    file.symlink_to(elsewhere)
    pkg = make_package(tmp_path / "m", "hosts", "9.0.0", mallory)
    with pytest.raises(IndexRepoError, match="symbolic link"):
        index.do(lambda repo: release_from_package(pkg, repo))


# -- 4. keys and offline signing ---------------------------------------------------------------


@pytest.fixture
def role_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ed25519.PASSPHRASE_ENV, raising=False)
    for role, value in ROLE_PASS.items():
        monkeypatch.setenv(f"PM_PLUGINS_{role.upper()}_PASSPHRASE", value.decode())


def _staged_timestamp_rotation(tmp_path: Path) -> tuple[Path, Path]:
    repo_dir, offline = offline_repo(tmp_path, ed25519.generate())
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        repo.rotate("timestamp")
    return repo_dir, offline


def _signed_copy(repo_dir: Path, offline: Path, tmp_path: Path, name: str = "copy.json") -> Path:
    copy = tmp_path / name
    shutil.copyfile(repo_dir / "staged" / "root.json", copy)
    for kid in root_keys(repo_dir)[:2]:
        sign_file(copy, ed25519.load_private_key(offline / f"{kid}.key", ROLE_PASS["root"]))
    return copy


def _import(repo_dir: Path, *files: Path) -> Any:
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        return repo.import_signatures(files)


def test_a_rotation_record_edited_to_add_a_key_is_refused(tmp_path: Path, role_env: None) -> None:
    repo_dir, offline = _staged_timestamp_rotation(tmp_path)
    after = repo_dir / "staged" / "root.after.json"
    record = json.loads(after.read_bytes())
    record["new"].append(ed25519.key_id(ed25519.generate()))  # an insider's key
    after.write_text(json.dumps(record))
    copy = _signed_copy(repo_dir, offline, tmp_path)
    with pytest.raises(IndexRepoError, match="does not give timestamp the keys its rotation"):
        _import(repo_dir, copy)
    with IndexRepo.open(repo_dir) as repo:
        assert repo.role_version("root") == 1


def test_an_unknown_signature_beside_good_ones_is_refused_and_never_published(
    tmp_path: Path, role_env: None
) -> None:
    repo_dir, offline = _staged_timestamp_rotation(tmp_path)
    copy = _signed_copy(repo_dir, offline, tmp_path)
    junk = read_metadata(copy)
    stranger = ed25519.generate()
    from index.keyring import tuf_signer

    junk.sign(tuf_signer(stranger), append=True)
    with_junk = tmp_path / "junk.json"
    with_junk.write_bytes(junk.to_bytes())
    staged_before = (repo_dir / "staged" / "root.json").read_bytes()
    with pytest.raises(IndexRepoError, match="which is not a key that signs root v2"):
        _import(repo_dir, with_junk)
    assert (repo_dir / "staged" / "root.json").read_bytes() == staged_before
    [done] = _import(repo_dir, copy)
    assert done.activated
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        repo.publish()
    published = Metadata[Root].from_bytes(
        (repo_dir / "published" / "metadata" / "2.root.json").read_bytes()
    )
    assert ed25519.key_id(stranger) not in published.signatures
    assert set(published.signatures) <= set(published.signed.roles["root"].keyids)


def test_signing_a_targets_file_posing_as_a_root_shows_it_and_is_no_use(
    tmp_path: Path, role_env: None
) -> None:
    repo_dir, offline = _staged_timestamp_rotation(tmp_path)
    posing = tmp_path / "root-v2.json"  # what a co-maintainer hands the root key holder
    md = Metadata(Targets(version=2, expires=datetime.now(UTC) + timedelta(days=30)))
    md.signed.targets["hosts/9/any/hosts.pyz"] = TargetFile(1, {"sha256": "e" * 64}, "hosts/9")
    posing.write_bytes(md.to_bytes())
    kid = root_keys(repo_dir)[0]
    r = CliRunner().invoke(
        main_cli,
        ["--home", str(tmp_path / "h"), "index", "sign", str(posing), "--role", "root",
         "--key", str(offline / f"{kid}.key")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith("targets v2,")  # not "root v2"
    assert "  1 target(s)" in r.output
    with pytest.raises(IndexRepoError, match="holds targets metadata, but no targets metadata"):
        _import(repo_dir, posing)
    with IndexRepo.open(repo_dir) as repo:
        assert repo.role_version("root") == 1


def test_a_keys_index_pointing_the_timestamp_at_the_root_key_is_refused(
    tmp_path: Path, role_env: None
) -> None:
    repo_dir = tmp_path / "repo"
    with IndexRepo.init(repo_dir, passphrase=Asked()) as repo:
        repo.add_releases([release("a", "1.0", ed25519.generate())])
        repo.publish()
        root = Metadata[Root].from_bytes(repo.root_bytes()).signed
    (ts,) = root.roles["timestamp"].keyids
    (rk,) = root.roles["root"].keyids
    keys = repo_dir / "keys"
    places = json.loads((keys / "keys.json").read_bytes())
    places["keys"][ts] = {**places["keys"][ts], "uri": f"pmkey:{rk}.key"}
    (keys / "keys.json").write_text(json.dumps(places))
    before = (repo_dir / "published" / "metadata" / "timestamp.json").read_bytes()
    for passphrase in (Asked(), lambda role, new: ROLE_PASS["root"]):  # even with root's
        with (
            IndexRepo.open(repo_dir, passphrase=passphrase) as repo,
            pytest.raises(IndexRepoError, match=r"passphrase is wrong|another key"),
        ):
            repo.timestamp()
    assert (repo_dir / "published" / "metadata" / "timestamp.json").read_bytes() == before


# -- 5. S3 push --------------------------------------------------------------------------------

_buckets = itertools.count(1)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        binary = build_versitygw()
        server = S3Server(binary, tmp_path_factory.mktemp("s3-attacks") / "root")
    except RuntimeError as e:
        pytest.fail(f"the S3 tests need versitygw: {e}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def aws(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    return s3


def _multipart(s3: S3Server, bucket: str, key: str, body: bytes, sha256: str) -> None:
    """An object whose ETag is no MD5 (multipart) and whose metadata claims `sha256`."""
    c = s3.client()
    upload = c.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"sha256": sha256})
    part = c.upload_part(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=body
    )
    c.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )  # fmt: skip


def test_a_bucket_object_with_wrong_bytes_but_a_matching_listing_is_caught(
    aws: S3Server, tmp_path: Path
) -> None:
    publisher = ed25519.generate()
    with IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE) as repo:
        root = repo.root_bytes(1)
        repo.add_releases([release("hosts", "1.0.0", publisher)])
        repo.publish()
        published = repo.published_dir
    bucket = aws.public_bucket(f"atk-{os.getpid()}-{next(_buckets)}")
    (artifact,) = [p for p in (published / "targets").rglob("*.hosts.pyz")]
    rel = artifact.relative_to(published).as_posix()
    good = artifact.read_bytes()
    bad = bytes([good[0] ^ 1]) + good[1:]
    _multipart(aws, bucket, f"reg/{rel}", bad, hashlib.sha256(good).hexdigest())
    to = f"s3://{bucket}/reg"
    push(published, to, endpoint_url=aws.endpoint)
    client = RegistryClient("s3", f"{aws.endpoint}/{bucket}/reg", tmp_path / "c", root)
    client.refresh()
    (hosts,) = client.find("hosts")
    with pytest.raises(RegistryError, match=r"hosts\.pyz"):  # TUF refuses, naming the file
        client.download(hosts.artifact, tmp_path / "dl")
    # the way out: a push that checks what it would skip
    push(published, to, endpoint_url=aws.endpoint, verify=True)
    assert client.download(hosts.artifact, tmp_path / "dl").read_bytes() == good


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/a/../b", "s3://bucket/..", "s3://bucket/a//b", "s3://bucket//a",
        "s3://bucket/a%2Fb", "s3://bucket/a%2F..%2Fb", "s3://bucket/./a", "s3://bucket/a\\b",
    ],
)  # fmt: skip
def test_a_prefix_that_could_escape_is_refused(url: str) -> None:
    with pytest.raises(IndexRepoError, match="is not an s3://BUCKET/PREFIX URL"):
        S3Location.parse(url)


def test_a_published_file_whose_name_has_an_escaped_slash_is_not_pushed(
    aws: S3Server, tmp_path: Path
) -> None:
    with IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE) as repo:
        repo.add_releases([release("hosts", "1.0.0", ed25519.generate())])
        repo.publish()
        published = repo.published_dir
    bucket = aws.public_bucket(f"atk-{os.getpid()}-{next(_buckets)}")
    odd = published / "targets" / "hosts" / "a%2F..%2F..%2Fmetadata%2Ftimestamp.json"
    odd.write_text("x")
    with pytest.raises(IndexRepoError, match="refusing to push"):
        push(published, f"s3://{bucket}/reg", endpoint_url=aws.endpoint)
    assert aws.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    odd.rename(odd.with_name("." + odd.name))  # publish's temporary files: never pushed
    done = push(published, f"s3://{bucket}/reg", endpoint_url=aws.endpoint)
    listed = aws.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert not any("%" in o["Key"] or "%" in k for o in listed for k in done.uploaded)
