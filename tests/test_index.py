"""index/ and `pm-plugins index`: keys, signed metadata, publishing, the CLI.

Real keys, real TUF metadata, real files; the published index is read back through the
user-side client (registry_client.tuf_client) where that is what matters.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from tuf.api.metadata import Metadata, Root, Targets, Timestamp  # type: ignore[attr-defined]

from cli.index import index as index_cli
from index import ExpiryPolicy, IndexRepo, IndexRepoError, RoleKeys, make_server
from index.intake import release_from_package
from keys import dsse, ed25519
from registry_client.tuf_client import RegistryClient
from tests.tuf_helpers import PASSPHRASE, PAYLOAD_TYPE, make_package, manifest_payload, release


@pytest.fixture
def publisher() -> ed25519.Ed25519PrivateKey:
    return ed25519.generate()


@pytest.fixture
def repo(tmp_path: Path):
    with IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE) as r:
        yield r


def published_files(pub: Path) -> dict[str, bytes]:
    return {str(p.relative_to(pub)): p.read_bytes() for p in pub.rglob("*") if p.is_file()}


def client_for(repo: IndexRepo, cache: Path) -> RegistryClient:
    return RegistryClient("test", str(repo.published_dir), cache, repo.root_bytes(1))


# -- init ------------------------------------------------------------------------------------


def test_init_makes_encrypted_keys_and_a_threshold_root(tmp_path: Path) -> None:
    with IndexRepo.init(
        tmp_path / "r", passphrase=PASSPHRASE, roles={"root": RoleKeys(keys=3, threshold=2)}
    ) as repo:
        root = Metadata[Root].from_bytes(repo.root_bytes(1))
    assert root.signed.roles["root"].threshold == 2
    assert len(root.signed.roles["root"].keyids) == 3
    assert root.signed.consistent_snapshot is True
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    key_files = sorted((tmp_path / "r" / "keys").glob("*.key"))
    assert len(key_files) == 6  # 3 root + targets + snapshot + timestamp
    for f in key_files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in f.read_bytes()
        kid = f.stem
        assert ed25519.key_id(ed25519.load_private_key(f, PASSPHRASE)) == kid
        assert kid in root.signed.keys  # TUF key ids are our key ids
    assert not (tmp_path / "r" / "published").exists()  # nothing published before publish


def test_init_refusals(tmp_path: Path) -> None:
    with pytest.raises(IndexRepoError, match="PM_PLUGINS_KEY_PASSPHRASE"):
        IndexRepo.init(tmp_path / "a", passphrase=None)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(IndexRepoError, match="not an empty folder"):
        IndexRepo.init(tmp_path / "b", passphrase=PASSPHRASE)
    with pytest.raises(IndexRepoError, match="threshold"):
        IndexRepo.init(
            tmp_path / "c", passphrase=PASSPHRASE, roles={"root": RoleKeys(keys=1, threshold=2)}
        )
    with pytest.raises(IndexRepoError, match="whole number of days"):
        ExpiryPolicy(timestamp=0)
    with (
        IndexRepo.init(tmp_path / "d", passphrase=PASSPHRASE),
        pytest.raises(IndexRepoError, match="another pm-plugins index command"),
    ):
        IndexRepo.open(tmp_path / "d")
    with pytest.raises(IndexRepoError, match="not an index repository"):
        IndexRepo.open(tmp_path / "nowhere")


# -- add and publish -------------------------------------------------------------------------


def test_add_publish_layout_and_custom_fields(repo: IndexRepo, publisher, tmp_path: Path) -> None:
    rel = release(
        "hosts", "1.2.0", publisher, platform="linux-x86_64",
        requires={"host": ["firewall"], "plugins": {"allowlist": ">=1,<2"}},
    )  # fmt: skip
    added = repo.add_releases([rel, release("hosts", "1.2.0", publisher)])
    assert [a.artifact_path for a in added] == [
        "hosts/1.2.0/linux-x86_64/hosts.pyz",
        "hosts/1.2.0/any/hosts.pyz",
    ]
    result = repo.publish()
    assert result.signed == {"targets": 1, "snapshot": 1, "timestamp": 1}
    pub = repo.published_dir
    names = sorted(p.name for p in (pub / "metadata").iterdir())
    assert names == [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "root.json",
        "timestamp.json",
    ]
    targets = Metadata[Targets].from_bytes((pub / "metadata" / "1.targets.json").read_bytes())
    art = targets.signed.targets["hosts/1.2.0/linux-x86_64/hosts.pyz"]
    assert art.custom == {
        "name": "hosts",
        "version": "1.2.0",
        "platform": "linux-x86_64",
        "types": ["resolver"],
        "requires": {"host": ["firewall"], "plugins": {"allowlist": ">=1,<2"}},
        "description": "the hosts plugin",
        "publisher": "Test Publisher",
        "publisher_key_id": ed25519.key_id(publisher),
        "manifest": "hosts/1.2.0/linux-x86_64/manifest.dsse.json",
    }
    assert "hosts/1.2.0/linux-x86_64/manifest.dsse.json" in targets.signed.targets
    listing = targets.signed.targets["hosts/releases.json"]
    assert [e["artifact"]["path"] for e in listing.custom["releases"]] == [
        "hosts/1.2.0/linux-x86_64/hosts.pyz",
        "hosts/1.2.0/any/hosts.pyz",
    ]
    # consistent snapshots: targets are served as <dir>/<sha256>.<basename>
    sha = art.hashes["sha256"]
    served = pub / "targets" / "hosts" / "1.2.0" / "linux-x86_64" / f"{sha}.hosts.pyz"
    assert served.read_bytes() == rel.artifact
    # and the client reads it all back from metadata alone
    client = client_for(repo, tmp_path / "cache")
    found = client.find("hosts")
    assert {(r.version, r.platform) for r in found} == {("1.2.0", "linux-x86_64"), ("1.2.0", "any")}
    assert found[0].plugin_requires == (("allowlist", ">=1,<2"),)
    assert found[0].host_modules == ("firewall",)


def test_add_refusals(repo: IndexRepo, publisher) -> None:
    repo.add_releases([release("hosts", "1.0.0", publisher)])
    with pytest.raises(IndexRepoError, match="already in the index"):
        repo.add_releases([release("hosts", "1.0.0", publisher, artifact=b"other bytes")])
    repo.publish()
    with pytest.raises(IndexRepoError, match="a published release never changes"):
        repo.add_releases([release("hosts", "1.0.0", publisher)])
    with pytest.raises(IndexRepoError, match="given twice"):
        repo.add_releases([release("x", "1.0", publisher), release("x", "1.0", publisher)])
    assert "x/1.0/any/x.pyz" not in repo.all_targets()  # a refused batch adds nothing
    good = release("hosts", "1.0.1", publisher)
    with pytest.raises(IndexRepoError, match="plugin name"):
        repo.add_releases([dataclasses.replace(good, name="../etc")])
    with pytest.raises(IndexRepoError, match="version"):
        repo.add_releases([dataclasses.replace(good, version="1.0/../../x")])
    with pytest.raises(IndexRepoError, match="file name"):
        repo.add_releases([dataclasses.replace(good, artifact_filename="manifest.dsse.json")])
    with pytest.raises(IndexRepoError, match="custom field 'name' is set by the index"):
        repo.add_releases([dataclasses.replace(good, custom={**good.custom, "name": "x"})])


def test_publish_again_signs_nothing_and_old_versions_stay(repo: IndexRepo, publisher) -> None:
    repo.add_releases([release("a", "1.0", publisher)])
    repo.publish()
    before = published_files(repo.published_dir)
    again = repo.publish()
    assert again.signed == {} and again.metadata_written == 0 and not again.changed
    assert published_files(repo.published_dir) == before
    repo.add_releases([release("a", "1.1", publisher)])
    third = repo.publish()
    assert third.signed == {"targets": 2, "snapshot": 2, "timestamp": 2}
    after = published_files(repo.published_dir)
    for name, data in before.items():
        if name != "metadata/timestamp.json":
            assert after[name] == data  # versioned files are never rewritten


def test_timestamp_bumps_only_the_timestamp(repo: IndexRepo, publisher) -> None:
    with pytest.raises(IndexRepoError, match="run publish before timestamp"):
        repo.timestamp()
    repo.add_releases([release("a", "1.0", publisher)])
    repo.publish()
    before = published_files(repo.published_dir)
    versions = {r: repo.role_version(r) for r in ("root", "targets", "snapshot")}
    later = datetime.now(UTC) + timedelta(hours=20)
    assert repo.timestamp(now=later) == 2
    after = published_files(repo.published_dir)
    assert set(after) == set(before)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"metadata/timestamp.json"}
    assert {r: repo.role_version(r) for r in versions} == versions
    ts = Metadata[Timestamp].from_bytes(after["metadata/timestamp.json"]).signed
    assert ts.version == 2
    assert ts.expires == later.replace(microsecond=0) + timedelta(days=1)
    assert ts.snapshot_meta.version == 1


def test_a_versioned_file_is_never_overwritten(repo: IndexRepo, publisher) -> None:
    repo.add_releases([release("a", "1.0", publisher)])
    repo.publish()
    repo.add_releases([release("a", "2.0", publisher)])
    meta = repo.published_dir / "metadata"
    (meta / "2.targets.json").write_bytes(b"someone else's 2.targets.json")
    with pytest.raises(IndexRepoError, match="refusing to overwrite a versioned file"):
        repo.publish()
    assert (meta / "2.targets.json").read_bytes() == b"someone else's 2.targets.json"
    ts = Metadata[Timestamp].from_bytes((meta / "timestamp.json").read_bytes()).signed
    assert ts.version == 1  # readers still see the previous, complete index


def test_publish_is_atomic_for_a_concurrent_reader(
    repo: IndexRepo, publisher, tmp_path: Path
) -> None:
    repo.set_hash_bins(4)
    repo.add_releases([release("p0", "1.0", publisher)])
    repo.publish()
    meta = repo.published_dir / "metadata"
    client = client_for(repo, tmp_path / "cache")
    stop = threading.Event()
    problems: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                ts = json.loads((meta / "timestamp.json").read_bytes())
                version = ts["signed"]["meta"]["snapshot.json"]["version"]
                snap = json.loads((meta / f"{version}.snapshot.json").read_bytes())
                for name, info in snap["signed"]["meta"].items():
                    if not (meta / f"{info['version']}.{name}").exists():
                        problems.append(f"snapshot v{version} names missing {name}")
                client.refresh()
                client.find("p0")
                reads += 1
            except Exception as e:
                problems.append(repr(e))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 12):
            repo.add_releases([release(f"p{i}", "1.0", publisher)])
            repo.publish()
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert reads > 0
    client.refresh()
    assert len(client.releases()) == 12


def test_hash_bins_hold_the_targets_and_can_be_resized(
    repo: IndexRepo, publisher, tmp_path: Path
) -> None:
    for i in range(6):
        repo.add_releases([release(f"p{i}", "1.0", publisher)])
    repo.publish()
    client = client_for(repo, tmp_path / "cache")
    assert len(client.releases()) == 6
    assert repo.set_hash_bins(4) is True
    assert repo.set_hash_bins(4) is False
    top = Metadata[Targets].from_bytes(_role_bytes(repo, "targets"))
    assert top.signed.targets == {}  # moved into bins
    repo.publish()
    client.refresh()  # an existing client follows the new layout
    assert len(client.releases()) == 6
    assert repo.set_hash_bins(16) is True  # re-binning: bin-0..bin-f replace bin-0..bin-3
    repo.add_releases([release("p6", "1.0", publisher)])
    result = repo.publish()
    assert result.signed["bin-0"] == 2  # a bin created again continues its version
    client.refresh()
    assert [r.name for r in client.releases()] == [f"p{i}" for i in range(7)]
    assert client.warnings == []
    with pytest.raises(IndexRepoError, match="power of two"):
        repo.set_hash_bins(6)


def _role_bytes(repo: IndexRepo, role: str) -> bytes:
    return (repo.path / "metadata" / f"{role}.json").read_bytes()


def test_rotate_targets_key_retires_the_old_one(repo: IndexRepo, publisher, tmp_path) -> None:
    repo.set_hash_bins(2)
    repo.add_releases([release("a", "1.0", publisher)])
    repo.publish()
    old = Metadata[Root].from_bytes(repo.root_bytes()).signed.roles["targets"].keyids
    client = client_for(repo, tmp_path / "cache")
    client.refresh()
    new_ids = repo.rotate("targets")
    assert (repo.path / "keys" / "retired" / f"{old[0]}.key").is_file()
    assert repo.role_version("root") == 2
    result = repo.publish()
    assert {"targets", "bins", "bin-0", "bin-1"} <= set(result.signed)
    state = client.refresh()
    assert state.root_version == 2
    assert [r.name for r in client.releases()] == ["a"]
    bins = Metadata[Targets].from_bytes(_role_bytes(repo, "bins")).signed
    assert bins.delegations is not None and bins.delegations.succinct_roles is not None
    assert bins.delegations.succinct_roles.keyids == new_ids
    with pytest.raises(IndexRepoError, match="not a top-level role"):
        repo.rotate("bins")


# -- packages and delegation -----------------------------------------------------------------


def test_read_package_checks_the_artifact_and_a_delegated_signature(
    repo: IndexRepo, publisher, tmp_path: Path
) -> None:
    pkg = make_package(tmp_path, "hosts", "1.0.0", publisher)
    repo.add_publisher(publisher.public_key(), ["hosts"])
    info = release_from_package(pkg, repo)
    assert info.custom["publisher_key_id"] == ed25519.key_id(publisher)
    assert info.manifest == (pkg / "manifest.dsse.json").read_bytes()
    (pkg / "hosts.pyz").write_bytes(b"tampered")
    with pytest.raises(IndexRepoError, match="does not match the size and SHA-256"):
        release_from_package(pkg, repo)
    # once hosts is delegated, only its publisher's signature will do
    other = ed25519.generate()
    repo.delegate("safing", other.public_key(), ["allow"], publisher_key=other)
    pkg2 = make_package(tmp_path, "allow", "1.0.0", publisher)
    with pytest.raises(IndexRepoError, match="none of them is one of role publisher-safing"):
        release_from_package(pkg2, repo)
    pkg3 = make_package(tmp_path / "ok", "allow", "1.0.0", other)
    assert release_from_package(pkg3, repo).custom["publisher_key_id"] == ed25519.key_id(other)


def test_delegated_releases_need_the_publishers_key(repo: IndexRepo, tmp_path) -> None:
    alice, bob = ed25519.generate(), ed25519.generate()
    repo.delegate("alice", alice.public_key(), ["alpha"])
    with pytest.raises(IndexRepoError, match="not signed by its publisher"):
        repo.publish()  # alice's role was created but she has not signed it yet
    with pytest.raises(IndexRepoError, match="delegated to publisher alice"):
        repo.add_releases([release("alpha", "1.0", alice)], publisher_keys=[bob])
    added = repo.add_releases([release("alpha", "1.0", alice)], publisher_keys=[alice])
    assert added[0].role == "publisher-alice"
    with pytest.raises(IndexRepoError, match="already delegated to publisher alice"):
        repo.delegate("bob", bob.public_key(), ["alpha"])
    repo.add_releases([release("beta", "1.0", bob)])
    with pytest.raises(IndexRepoError, match="signed by the index itself"):
        repo.delegate("bob", bob.public_key(), ["beta"])
    repo.publish()
    client = client_for(repo, tmp_path / "cache")
    assert [(r.name, r.publisher_key_id) for r in client.releases()] == [
        ("alpha", ed25519.key_id(alice)),
        ("beta", ed25519.key_id(bob)),
    ]


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv(ed25519.PASSPHRASE_ENV, PASSPHRASE.decode())
    return CliRunner()


def test_cli_init_add_publish_verify(runner: CliRunner, publisher, tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    r = runner.invoke(
        index_cli,
        ["init", "--repo", str(repo_dir), "--keys", "root=2", "--threshold", "root=2",
         "--expires", "timestamp=2", "--hash-bins", "4"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "root 2-of-2" in r.output and "4 hash bins" in r.output
    pkgs = [
        make_package(tmp_path / "pkgs", "hosts", "1.0.0", publisher),
        make_package(tmp_path / "pkgs", "hosts", "1.1.0", publisher),
        make_package(tmp_path / "pkgs", "allowlist", "0.1.0", publisher),
    ]
    with IndexRepo.open(repo_dir) as repo:
        repo.add_publisher(publisher.public_key(), ["hosts", "allowlist"])
    r = runner.invoke(index_cli, ["add", "--repo", str(repo_dir), *map(str, pkgs)])
    assert r.exit_code == 0, r.output
    assert "added hosts 1.0.0 (any) to role bin-" in r.output
    r = runner.invoke(index_cli, ["publish", "--repo", str(repo_dir)])
    assert r.exit_code == 0, r.output
    assert "timestamp v1" in r.output and "signed: " in r.output
    r = runner.invoke(index_cli, ["verify", "--repo", str(repo_dir), "--json"])
    assert r.exit_code == 0, r.output
    counts = json.loads(r.output)
    assert counts["releases"] == 3 and counts["plugins"] == 2 and counts["targets"] == 8
    r = runner.invoke(index_cli, ["timestamp", "--repo", str(repo_dir)])
    assert r.exit_code == 0 and "signed timestamp v2, valid for 2 day(s)" in r.output
    r = runner.invoke(index_cli, ["verify", "--repo", str(repo_dir)])
    assert r.exit_code == 0, r.output
    assert "3 releases of 2 plugins, 8 target files checked" in r.output
    # a target file changed on the server: verify fails with one sentence
    served = next((repo_dir / "published" / "targets" / "hosts" / "1.1.0").rglob("*.hosts.pyz"))
    served.write_bytes(served.read_bytes()[::-1])
    r = runner.invoke(index_cli, ["verify", "--repo", str(repo_dir)])
    assert r.exit_code == 1
    assert "do not match their signed length and hash" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_cli_delegate_rotate_and_refusals(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_dir = tmp_path / "repo"
    assert runner.invoke(index_cli, ["init", "--repo", str(repo_dir)]).exit_code == 0
    alice = ed25519.generate()
    key_file = tmp_path / "alice.key"
    ed25519.save_private_key(key_file, alice, PASSPHRASE)
    pub_text = ed25519.public_key_to_text(alice.public_key())
    r = runner.invoke(
        index_cli,
        ["delegate", "--repo", str(repo_dir), "alice", "--key", pub_text,
         "--plugins", "alpha,gamma"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "delegated alpha, gamma to alice (role publisher-alice" in r.output
    pkg = make_package(tmp_path / "pkgs", "alpha", "1.0.0", alice)
    r = runner.invoke(index_cli, ["add", "--repo", str(repo_dir), str(pkg)])
    assert r.exit_code == 1 and "--publisher-key" in r.output
    r = runner.invoke(
        index_cli,
        ["add", "--repo", str(repo_dir), str(pkg), "--publisher-key", str(key_file)],
    )
    assert r.exit_code == 0, r.output
    assert "to role publisher-alice" in r.output
    assert runner.invoke(index_cli, ["publish", "--repo", str(repo_dir)]).exit_code == 0
    r = runner.invoke(index_cli, ["rotate", "--repo", str(repo_dir), "root", "--keys", "2"])
    assert r.exit_code == 0, r.output
    assert "in root v2" in r.output
    r = runner.invoke(index_cli, ["publish", "--repo", str(repo_dir), "--json"])
    assert json.loads(r.output)["root_version"] == 2
    r = runner.invoke(index_cli, ["verify", "--repo", str(repo_dir)])
    assert r.exit_code == 0 and "root v2" in r.output, r.output
    # refusals: one sentence, exit 1, no traceback
    monkeypatch.delenv(ed25519.PASSPHRASE_ENV)
    r = runner.invoke(index_cli, ["init", "--repo", str(tmp_path / "other")])
    assert r.exit_code == 1 and "set PM_PLUGINS_KEY_PASSPHRASE" in r.output
    r = runner.invoke(index_cli, ["publish", "--repo", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "is not an index repository" in r.output
    r = runner.invoke(index_cli, ["timestamp", "--repo", str(repo_dir)])
    assert r.exit_code == 1 and "no passphrase was given" in r.output
    for result in (r,):
        assert "Traceback" not in result.output


def test_envelope_with_another_payload_type_is_refused(repo: IndexRepo, publisher, tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    payload = manifest_payload("hosts", "1.0.0", b"x")
    envelope = dsse.sign(payload, "application/json", [publisher])
    (pkg / "manifest.dsse.json").write_bytes(dsse.envelope_to_bytes(envelope))
    with pytest.raises(IndexRepoError, match="not a plugin manifest"):
        release_from_package(pkg, repo)
    assert PAYLOAD_TYPE != "application/json"


def test_publish_hash_bins_cli_and_the_static_server(
    runner: CliRunner, publisher, tmp_path: Path
) -> None:
    repo_dir = tmp_path / "repo"
    assert runner.invoke(index_cli, ["init", "--repo", str(repo_dir)]).exit_code == 0
    pkgs = [make_package(tmp_path / "pkgs", f"p{i}", "1.0", publisher) for i in range(3)]
    with IndexRepo.open(repo_dir) as repo:
        repo.add_publisher(publisher.public_key(), ["*"])
    assert (
        runner.invoke(index_cli, ["add", "--repo", str(repo_dir), *map(str, pkgs)]).exit_code == 0
    )
    assert runner.invoke(index_cli, ["publish", "--repo", str(repo_dir)]).exit_code == 0
    r = runner.invoke(index_cli, ["publish", "--repo", str(repo_dir), "--hash-bins", "8"])
    assert r.exit_code == 0, r.output
    assert "bins v1" in r.output and "8 hash bin(s)" in r.output
    server = make_server(repo_dir / "published", quiet=True)
    server.start_in_thread()
    try:
        with IndexRepo.open(repo_dir) as repo:
            root = repo.root_bytes(1)
        client = RegistryClient.bootstrap("served", server.url, tmp_path / "cache", root)
        assert [r.name for r in client.releases()] == ["p0", "p1", "p2"]
    finally:
        server.shutdown()
        server.server_close()
