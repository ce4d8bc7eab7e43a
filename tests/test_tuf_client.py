"""registry_client.tuf_client against a real index over real HTTP on 127.0.0.1.

Each attack is made with real keys the way an attacker (or a stale mirror) would make it;
after each refusal the client's cache still trusts only what it should.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, MetaFile, Root, TargetFile  # type: ignore[attr-defined]
from tuf.ngclient._internal import trusted_metadata_set

from index import IndexRepo, RoleKeys
from index.keyring import tuf_key, tuf_signer
from keys import ed25519
from registry_client.tuf_client import (
    FileFetcher,
    RegistryClient,
    RegistryError,
    RequestsFetcher,
)
from tests.tuf_helpers import (
    PASSPHRASE,
    IndexServer,
    cached_version,
    forge_release,
    load,
    release,
    signed_bytes,
)


@pytest.fixture
def publisher() -> ed25519.Ed25519PrivateKey:
    return ed25519.generate()


@pytest.fixture
def repo(tmp_path: Path, publisher) -> Iterator[IndexRepo]:
    with IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE) as r:
        r.add_releases([release("hosts", "1.0.0", publisher)])
        r.publish()
        yield r


@pytest.fixture
def server(repo: IndexRepo) -> Iterator[IndexServer]:
    s = IndexServer(repo.published_dir)
    yield s
    s.close()


def new_client(repo: IndexRepo, server: IndexServer, cache: Path) -> RegistryClient:
    return RegistryClient.bootstrap("demo", server.url, cache, repo.root_bytes(1))


def test_install_path_over_http(repo, server, publisher, tmp_path: Path) -> None:
    repo.add_releases([release("hosts", "1.1.0", publisher), release("allow", "0.1", publisher)])
    repo.publish()
    client = new_client(repo, server, tmp_path / "cache")
    state = client.refresh()
    assert (state.root_version, state.timestamp_version, state.snapshot_version) == (1, 2, 2)
    assert [(r.name, r.version) for r in client.releases()] == [
        ("allow", "0.1"),
        ("hosts", "1.0.0"),
        ("hosts", "1.1.0"),
    ]
    found = {r.version: r for r in client.find("hosts")}
    assert set(found) == {"1.0.0", "1.1.0"}
    newest = found["1.1.0"]
    art = client.download(newest.artifact, tmp_path / "dl")
    assert art == tmp_path / "dl" / "hosts.pyz"
    assert art.read_bytes() == b"hosts 1.1.0 any"
    envelope = client.download(newest.manifest, tmp_path / "dl")
    assert envelope.name == "manifest.dsse.json"
    by_path = client.download("allow/0.1/any/allow.pyz", tmp_path / "dl2")
    assert by_path.read_bytes() == b"allow 0.1 any"
    assert client.find("nothing-here") == []
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [
        "hosts.pyz",
        "manifest.dsse.json",
    ]  # no partial files left


@pytest.mark.parametrize("form", ["folder", "file-url"])
def test_a_local_copy_is_verified_the_same_way(repo, tmp_path: Path, form: str) -> None:
    copy = tmp_path / "mirror"
    shutil.copytree(repo.published_dir, copy)
    url = str(copy) if form == "folder" else copy.as_uri()
    client = RegistryClient.bootstrap("local", url, tmp_path / "cache", repo.root_bytes(1))
    assert isinstance(client.fetcher, FileFetcher)
    assert [r.name for r in client.releases()] == ["hosts"]
    target = next((copy / "targets" / "hosts" / "1.0.0" / "any").glob("*.hosts.pyz"))
    target.write_bytes(b"HOSTS 1.0.0 ANY")  # same length, other bytes
    with pytest.raises(RegistryError, match="do not match their signed length and hash"):
        client.download("hosts/1.0.0/any/hosts.pyz", tmp_path / "dl")


def test_bootstrap_refuses_a_bad_root(repo, server, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="registry demo: checking its root"):
        RegistryClient.bootstrap("demo", server.url, tmp_path / "c1", b"{not json")
    root = Metadata[Root].from_bytes(repo.root_bytes(1))
    root.signed.version = 7  # the signatures no longer match
    with pytest.raises(RegistryError, match="not signed by enough trusted keys"):
        RegistryClient.bootstrap("demo", server.url, tmp_path / "c2", root.to_bytes())
    good = RegistryClient.bootstrap("demo", server.url, tmp_path / "c2", repo.root_bytes(1))
    good.refresh()
    with pytest.raises(RegistryError, match="checking its root"):
        RegistryClient.bootstrap("demo", server.url, tmp_path / "c2", b"[]")
    assert good.refresh().root_version == 1  # a refused root leaves the trusted one alone
    assert sorted(p.name for p in (tmp_path / "c2").iterdir()) == ["metadata"]
    with pytest.raises(RegistryError, match="has no trusted root"):
        RegistryClient("demo", server.url, tmp_path / "c3")
    with pytest.raises(RegistryError, match="not an http"):
        RegistryClient("demo", "ftp://x/y", tmp_path / "c4", repo.root_bytes(1))


# -- rollback, mix-and-match, freeze ---------------------------------------------------------


def test_timestamp_rollback_is_refused(repo, server, publisher, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(repo.published_dir, old)
    repo.add_releases([release("hosts", "2.0.0", publisher)])
    repo.publish()
    cache = tmp_path / "cache"
    client = new_client(repo, server, cache)
    client.refresh()
    server.root = old  # a stale mirror or an attacker replaying yesterday's index
    with pytest.raises(RegistryError, match=r"timestamp version 1 must be >= 2.*rollback"):
        client.refresh()
    assert cached_version(cache, "timestamp") == 2
    assert cached_version(cache, "snapshot") == 2
    server.root = repo.published_dir
    assert {r.version for r in client.find("hosts")} == {"1.0.0", "2.0.0"}


def test_snapshot_rollback_is_refused(repo, server, publisher, tmp_path: Path) -> None:
    repo.add_releases([release("hosts", "2.0.0", publisher)])
    repo.publish()
    cache = tmp_path / "cache"
    client = new_client(repo, server, cache)
    client.refresh()
    pub = repo.published_dir
    ts = load(pub, "timestamp.json")
    old_snapshot = (pub / "metadata" / "1.snapshot.json").read_bytes()
    ts.signed.version += 1
    ts.signed.snapshot_meta = MetaFile(
        1, len(old_snapshot), {"sha256": hashlib.sha256(old_snapshot).hexdigest()}
    )
    (pub / "metadata" / "timestamp.json").write_bytes(
        signed_bytes(ts, repo.role_signers("timestamp"))  # a stolen online key
    )
    with pytest.raises(RegistryError, match="snapshot version must be >= 2"):
        client.refresh()
    assert cached_version(cache, "timestamp") == 2
    assert cached_version(cache, "snapshot") == 2


def test_targets_rollback_is_refused(repo, server, publisher, tmp_path: Path) -> None:
    repo.add_releases([release("hosts", "2.0.0", publisher)])
    repo.publish()
    cache = tmp_path / "cache"
    client = new_client(repo, server, cache)
    client.refresh()
    pub = repo.published_dir
    v1 = (pub / "metadata" / "1.targets.json").read_bytes()
    forge_release(repo, pub, {}, meta={"targets.json": MetaFile(1, len(v1))})
    with pytest.raises(RegistryError, match=r"targets.json version.*rollback"):
        client.refresh()
    assert cached_version(cache, "snapshot") == 2
    assert cached_version(cache, "targets") == 2
    with pytest.raises(RegistryError, match="rollback"):
        client.find("hosts")  # the next call refreshes afresh and refuses again


def test_mix_and_match_is_refused(repo, server, publisher, tmp_path: Path) -> None:
    repo.add_releases([release("hosts", "2.0.0", publisher)])
    repo.publish()
    meta = repo.published_dir / "metadata"
    shutil.copyfile(meta / "1.targets.json", meta / "2.targets.json")  # old targets, new name
    cache = tmp_path / "cache"
    client = new_client(repo, server, cache)
    with pytest.raises(RegistryError, match="registry demo: updating the index"):
        client.refresh()
    assert cached_version(cache, "targets") is None


def test_expired_timestamp_is_refused(repo, server, publisher, tmp_path: Path) -> None:
    repo.add_releases([release("hosts", "2.0.0", publisher)])
    signed_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    repo.publish(now=signed_at)  # the timestamp (1 day) expired two days ago
    cache = tmp_path / "cache"
    client = new_client(repo, server, cache)
    expired_on = (signed_at + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    with pytest.raises(
        RegistryError,
        match=f"registry demo: timestamp metadata expired on {expired_on} UTC; the registry"
        " must re-sign it",
    ):
        client.refresh()
    assert cached_version(cache, "timestamp") is None


def test_a_frozen_index_is_refused_once_it_expires(
    repo, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    client = new_client(repo, server, cache)
    client.refresh()
    # the server keeps serving the same, correctly signed files; the clock moves on
    real = dt.datetime

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return real.now(tz) + dt.timedelta(days=8)

    clock = types.SimpleNamespace(datetime=Later, timezone=dt.timezone)
    monkeypatch.setattr(trusted_metadata_set, "datetime", clock)
    with pytest.raises(RegistryError, match="timestamp metadata expired on"):
        client.refresh()
    assert cached_version(cache, "timestamp") == 1
    repo.timestamp(now=real.now(dt.UTC) + dt.timedelta(days=8))
    with pytest.raises(RegistryError, match="snapshot metadata expired"):
        client.refresh()  # a fresh timestamp alone does not revive a stale snapshot
    repo.publish(now=real.now(dt.UTC) + dt.timedelta(days=8))  # re-signs what is due
    assert client.refresh().timestamp_version == 3


# -- targets ---------------------------------------------------------------------------------


def test_target_bytes_that_differ_from_metadata_are_refused(repo, server, tmp_path: Path) -> None:
    client = new_client(repo, server, tmp_path / "cache")
    release_ = client.find("hosts")[0]
    served = next((repo.published_dir / "targets").rglob("*.hosts.pyz"))
    served.write_bytes(b"evil" + served.read_bytes()[4:])
    dest = tmp_path / "dl"
    with pytest.raises(
        RegistryError, match=re.escape("downloading hosts/1.0.0/any/hosts.pyz: the")
    ):
        client.download(release_.artifact, dest)
    assert list(dest.iterdir()) == []  # nothing, not even a partial file


def test_endless_data_is_cut_off(repo, server, tmp_path: Path) -> None:
    client = new_client(repo, server, tmp_path / "cache")
    artifact = client.find("hosts")[0].artifact
    served = f"/targets/hosts/1.0.0/any/{artifact.sha256}.hosts.pyz"
    server.endless.add(served)
    with pytest.raises(RegistryError, match="sent more bytes than the signed metadata allows"):
        client.download(artifact, tmp_path / "dl")
    assert server.endless_sent < 8 * 2**20  # the client hung up early
    server.endless.add("/metadata/timestamp.json")
    fresh = new_client(repo, server, tmp_path / "cache2")
    with pytest.raises(RegistryError, match="more bytes than the signed metadata allows for"):
        fresh.refresh()
    assert cached_version(tmp_path / "cache2", "timestamp") is None


def test_a_target_not_in_metadata_is_refused(repo, server, tmp_path: Path) -> None:
    evil = repo.published_dir / "targets" / "evil" / "1.0" / "any"
    evil.mkdir(parents=True)
    (evil / "evil.pyz").write_bytes(b"evil")
    client = new_client(repo, server, tmp_path / "cache")
    with pytest.raises(
        RegistryError, match=re.escape("evil/1.0/any/evil.pyz is not in the signed index")
    ):
        client.download("evil/1.0/any/evil.pyz", tmp_path / "dl")
    assert client.find("evil") == []
    assert [t.path.split("/")[0] for t in client.list_targets()] == ["hosts"] * 3
    with pytest.raises(RegistryError, match="is not a plugin name"):
        client.find("../hosts")


def test_a_publisher_cannot_sign_another_publishers_plugin(repo, server, tmp_path: Path) -> None:
    alice, bob = ed25519.generate(), ed25519.generate()
    repo.delegate("alice", alice.public_key(), ["alpha"], publisher_key=alice)
    repo.delegate("bob", bob.public_key(), ["beta"], publisher_key=bob)
    repo.add_releases([release("alpha", "1.0", alice)], publisher_keys=[alice])
    repo.add_releases([release("beta", "1.0", bob)], publisher_keys=[bob])
    repo.publish()
    pub = repo.published_dir
    # bob signs, in his own role, a release of alpha (delegated to alice only)
    bob_role = load(pub, f"{repo.role_version('publisher-bob')}.publisher-bob.json")
    evil = b"evil alpha"
    path = "alpha/9.9/any/alpha.pyz"
    custom = dict(bob_role.signed.targets["beta/1.0/any/beta.pyz"].custom)
    custom.update(name="alpha", version="9.9", manifest="alpha/9.9/any/manifest.dsse.json")
    tf = TargetFile(len(evil), {"sha256": hashlib.sha256(evil).hexdigest()}, path,
                    {"custom": custom})  # fmt: skip
    manifest = TargetFile(1, {"sha256": hashlib.sha256(b"x").hexdigest()},
                          "alpha/9.9/any/manifest.dsse.json")  # fmt: skip
    entry = {
        "artifact": {**tf.to_dict(), "path": path},
        "manifest": {**manifest.to_dict(), "path": manifest.path},
    }
    listing = {"releases": [entry]}
    bob_role.signed.targets[path] = tf
    bob_role.signed.targets[manifest.path] = manifest
    bob_role.signed.targets["alpha/releases.json"] = TargetFile(
        1, {"sha256": hashlib.sha256(b"y").hexdigest()}, "alpha/releases.json",
        {"custom": listing},
    )  # fmt: skip
    bob_role.signed.version += 1
    target_dir = pub / "targets" / "alpha" / "9.9" / "any"
    target_dir.mkdir(parents=True)
    (target_dir / f"{hashlib.sha256(evil).hexdigest()}.alpha.pyz").write_bytes(evil)
    forge_release(repo, pub, {"publisher-bob": (bob_role, [tuf_signer(bob)])})

    client = new_client(repo, server, tmp_path / "cache")
    assert [(r.name, r.version) for r in client.find("alpha")] == [("alpha", "1.0")]
    assert [r.name for r in client.releases()] == ["alpha", "beta", "hosts"]
    assert any("publisher-bob lists alpha/9.9/any/alpha.pyz" in w for w in client.warnings)
    with pytest.raises(
        RegistryError, match=re.escape("alpha/9.9/any/alpha.pyz is not in the signed index")
    ):
        client.download(path, tmp_path / "dl")


# -- keys ------------------------------------------------------------------------------------


def test_a_root_key_compromise_below_threshold_is_refused(tmp_path: Path, publisher) -> None:
    with IndexRepo.init(
        tmp_path / "repo", passphrase=PASSPHRASE, roles={"root": RoleKeys(keys=2, threshold=2)}
    ) as repo:
        repo.add_releases([release("hosts", "1.0.0", publisher)])
        repo.publish()
        server = IndexServer(repo.published_dir)
        try:
            cache = tmp_path / "cache"
            client = new_client(repo, server, cache)
            client.refresh()
            # the attacker holds one of the two root keys and makes their own timestamp key
            attacker = ed25519.generate()
            forged = Metadata[Root].from_bytes(repo.root_bytes(1))
            forged.signed.version = 2
            for kid in list(forged.signed.roles["timestamp"].keyids):
                forged.signed.revoke_key(kid, "timestamp")
            forged.signed.add_key(tuf_key(attacker), "timestamp")
            stolen = repo.role_signers("root")[0]
            data = signed_bytes(forged, [stolen])
            (repo.published_dir / "metadata" / "2.root.json").write_bytes(data)
            with pytest.raises(RegistryError, match=r"root was signed by 1/2 keys"):
                client.refresh()
            assert sorted(p.name for p in (cache / "metadata" / "root_history").iterdir()) == [
                "1.root.json"
            ]
            assert cached_version(cache, "root") == 1
        finally:
            server.close()


def test_clients_follow_root_and_timestamp_key_rotation(repo, server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    client = new_client(repo, server, cache)
    client.refresh()
    repo.rotate("root")
    repo.rotate("timestamp")
    result = repo.publish()
    assert result.root_version == 3 and "timestamp" in result.signed
    state = client.refresh()
    assert state.root_version == 3
    assert cached_version(cache, "root") == 3
    assert [r.name for r in client.releases()] == ["hosts"]
    # a new user who starts from root v1 walks 2.root.json and 3.root.json
    fresh = new_client(repo, server, tmp_path / "fresh")
    assert fresh.refresh().root_version == 3
    # and the cached root is the anchor from now on
    again = RegistryClient("demo", server.url, cache)
    assert again.refresh().root_version == 3


# -- hash bins, requests, HTTP behaviour ----------------------------------------------------


def test_hash_bins_cold_install_loads_one_bin(tmp_path: Path, publisher) -> None:
    with IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE, hash_bins=16) as repo:
        repo.add_releases([release(f"p{i}", "1.0", publisher) for i in range(40)])
        repo.publish()
        server = IndexServer(repo.published_dir)
        try:
            client = new_client(repo, server, tmp_path / "cache")
            found = client.find("p17")
            assert [(r.name, r.version) for r in found] == [("p17", "1.0")]
            fetched = server.metadata_requests()
            assert fetched[:5] == [
                "/metadata/2.root.json",  # the probe for a newer root (404)
                "/metadata/timestamp.json",
                "/metadata/1.snapshot.json",
                "/metadata/1.targets.json",
                "/metadata/1.bins.json",
            ]
            assert len(fetched) == 6 and fetched[5].startswith("/metadata/1.bin-")
            client.download(found[0].artifact, tmp_path / "dl")
            assert len(server.metadata_requests()) == 6  # the artifact needed no other bin
            assert len(client.releases()) == 40  # search loads every bin
            # an update with nothing new fetches only the root probe and the timestamp
            server.requests.clear()
            again = RegistryClient("demo", server.url, tmp_path / "cache")
            again.refresh()
            assert server.requests == ["/metadata/2.root.json", "/metadata/timestamp.json"]
        finally:
            server.close()


def test_http_errors_are_one_sentence(repo, server, tmp_path: Path) -> None:
    client = RegistryClient.bootstrap(
        "demo", server.url, tmp_path / "cache", repo.root_bytes(1),
        fetcher=RequestsFetcher(backoff=0.01),
    )  # fmt: skip
    server.fail["/metadata/timestamp.json"] = 2  # two 503s, then the file: retried
    assert client.refresh().timestamp_version == 1
    assert server.requests.count("/metadata/timestamp.json") == 3
    server.fail["/metadata/timestamp.json"] = 10
    with pytest.raises(RegistryError, match=re.escape("answered HTTP 503 for http://127.0.0.1")):
        client.refresh()
    server.close()
    fetcher = RequestsFetcher(retries=0, connect_timeout=2)
    dead = RegistryClient("demo", server.url, tmp_path / "cache", fetcher=fetcher)
    with pytest.raises(RegistryError) as info:
        dead.refresh()
    message = str(info.value)
    assert message.startswith("registry demo: updating the index: cannot download http://")
    assert "\n" not in message


def test_malformed_metadata_is_refused_before_tuf_reads_it(repo, server, tmp_path) -> None:
    ts = repo.published_dir / "metadata" / "timestamp.json"
    text = ts.read_text()
    ts.write_text('{"signatures":[],' + text[1:])  # a duplicate key
    client = new_client(repo, server, tmp_path / "cache")
    with pytest.raises(RegistryError, match=r'refused malformed metadata.*"signatures" twice'):
        client.refresh()
