"""Keys a real registry can run with: a passphrase per role, offline root and targets keys
(signed elsewhere, signatures imported and checked), the timestamp re-signed with its key
alone, signers from key URIs (a KMS stand-in), and `index status`.

Real keys, real TUF metadata; a client that trusted the old root reads the result back
through registry_client (python-tuf's ngclient).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from securesystemslib.signer import (  # type: ignore[attr-defined]
    SIGNER_FOR_URI_SCHEME,
    CryptoSigner,
    Key,
    SecretsHandler,
    Signature,
    Signer,
)
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

from cli.main import cli
from index import ExpiryPolicy, IndexRepo, IndexRepoError, RoleKeys
from index.keyring import tuf_signer
from index.staging import read_metadata, sign_file
from index.status import index_status
from keys import ed25519
from keys.errors import KeyFileError
from registry_client.tuf_client import RegistryClient
from tests.tuf_helpers import release

PASS = {
    "root": b"root passphrase",
    "targets": b"targets passphrase",
    "snapshot": b"snapshot passphrase",
    "timestamp": b"timestamp passphrase",
}
ENV = {role: f"PM_PLUGINS_{role.upper()}_PASSPHRASE" for role in PASS}


class Asked:
    """A passphrase source that knows only `known` roles and records who was asked."""

    def __init__(self, known: tuple[str, ...] = tuple(PASS)) -> None:
        self.known = known
        self.asked: list[str] = []

    def __call__(self, role: str, new: bool) -> bytes | None:
        self.asked.append(role)
        return PASS[role] if role in self.known else None


@pytest.fixture
def publisher() -> ed25519.Ed25519PrivateKey:
    return ed25519.generate()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ed25519.PASSPHRASE_ENV, raising=False)
    for role, value in PASS.items():
        monkeypatch.setenv(ENV[role], value.decode())
    yield


def run(tmp_path: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "index", *args])
    assert "Traceback" not in result.output
    return result


def one_sentence(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def client_for(repo_dir: Path, cache: Path) -> RegistryClient:
    root_v1 = (repo_dir / "metadata" / "root_history" / "1.root.json").read_bytes()
    return RegistryClient("test", str(repo_dir / "published"), cache, root_v1)


def root_keys(repo_dir: Path) -> list[str]:
    root = Metadata[Root].from_bytes((repo_dir / "metadata" / "root.json").read_bytes())
    return list(root.signed.roles["root"].keyids)


def offline_repo(tmp_path: Path, publisher: ed25519.Ed25519PrivateKey) -> tuple[Path, Path]:
    """A published repository with a 2-of-3 root whose keys are in tmp/offline only."""
    repo_dir, offline = tmp_path / "repo", tmp_path / "offline"
    roles = {"root": RoleKeys(keys=3, threshold=2)}
    with IndexRepo.init(repo_dir, passphrase=Asked(), roles=roles, offline={"root": offline}):
        pass
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        repo.add_releases([release("hosts", "1.0", publisher)])
        repo.publish()
    return repo_dir, offline


# -- one passphrase per role -----------------------------------------------------------------


def test_each_role_has_its_own_passphrase(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    with IndexRepo.init(repo_dir, passphrase=Asked()) as repo:
        root = Metadata[Root].from_bytes(repo.root_bytes()).signed
    index = json.loads((repo_dir / "keys" / "keys.json").read_bytes())["keys"]
    for role in PASS:
        for kid in root.roles[role].keyids:
            assert index[kid] == {"role": role, "uri": f"pmkey:{kid}.key"}
            ed25519.load_private_key(repo_dir / "keys" / f"{kid}.key", PASS[role])
    root_kid = root.roles["root"].keyids[0]
    with pytest.raises(KeyFileError, match="passphrase is wrong"):
        ed25519.load_private_key(repo_dir / "keys" / f"{root_kid}.key", PASS["timestamp"])
    # the timestamp passphrase given for every role opens no root key
    with (
        IndexRepo.open(repo_dir, passphrase=PASS["timestamp"]) as repo,
        pytest.raises(IndexRepoError, match=r"passphrase is wrong.*PM_PLUGINS_ROOT_PASSPHRASE"),
    ):
        repo.rotate("timestamp")
    # init asks every role before it writes anything; a missing one is named
    with pytest.raises(IndexRepoError, match="set PM_PLUGINS_SNAPSHOT_PASSPHRASE"):
        IndexRepo.init(tmp_path / "b", passphrase=Asked(("root", "targets")))
    assert not (tmp_path / "b").exists()
    with pytest.raises(IndexRepoError, match="must stay in the repository"):
        IndexRepo.init(tmp_path / "c", passphrase=Asked(), offline={"snapshot": tmp_path / "s"})
    with pytest.raises(IndexRepoError, match="inside the repository"):
        IndexRepo.init(tmp_path / "d", passphrase=Asked(), offline={"root": tmp_path / "d" / "k"})


def test_cli_passphrases_come_per_role(tmp_path: Path, env: None, monkeypatch) -> None:
    monkeypatch.delenv(ENV["targets"])
    r = run(tmp_path, "init", "--repo", str(tmp_path / "repo"))
    assert "set PM_PLUGINS_TARGETS_PASSPHRASE" in one_sentence(r)
    monkeypatch.setenv(ENV["targets"], PASS["targets"].decode())
    r = run(tmp_path, "init", "--repo", str(tmp_path / "repo"))
    assert r.exit_code == 0, r.output
    keys = json.loads((tmp_path / "repo" / "keys" / "keys.json").read_bytes())["keys"]
    for kid, entry in keys.items():
        path = tmp_path / "repo" / "keys" / f"{kid}.key"
        ed25519.load_private_key(path, PASS[entry["role"]])


def test_a_repository_from_before_keeps_working(tmp_path: Path, publisher) -> None:
    repo_dir = tmp_path / "repo"
    with IndexRepo.init(repo_dir, passphrase=b"one for all") as repo:
        repo.add_releases([release("a", "1.0", publisher)])
    (repo_dir / "keys" / "keys.json").unlink()  # as init wrote it before keys.json existed
    with IndexRepo.open(repo_dir, passphrase=b"one for all") as repo:
        assert repo.publish().signed == {"targets": 1, "snapshot": 1, "timestamp": 1}
        repo.rotate("timestamp")
        assert repo.publish().root_version == 2
        roles = {r.role: r for r in index_status(repo).roles}
    assert {k.where for r in roles.values() for k in r.keys} == {"repo"}
    assert client_for(repo_dir, tmp_path / "cache").refresh().root_version == 2


# -- the timestamp alone ---------------------------------------------------------------------


def test_timestamp_needs_only_the_timestamp_key(tmp_path: Path, publisher, env, monkeypatch):
    repo_dir = tmp_path / "repo"
    with IndexRepo.init(repo_dir, passphrase=Asked()) as repo:
        repo.add_releases([release("a", "1.0", publisher)])
        repo.publish()
        root = Metadata[Root].from_bytes(repo.root_bytes()).signed
    client = client_for(repo_dir, tmp_path / "cache")
    client.refresh()
    # the cron machine: only the timestamp key file and its passphrase
    (ts_kid,) = root.roles["timestamp"].keyids
    for role in ("root", "targets", "snapshot"):
        for kid in root.roles[role].keyids:
            (repo_dir / "keys" / f"{kid}.key").unlink()
    asked = Asked(("timestamp",))
    with IndexRepo.open(repo_dir, passphrase=asked) as repo:
        assert repo.timestamp(now=datetime.now(UTC) + timedelta(hours=1)) == 2
    assert asked.asked == ["timestamp"]
    for role in ("root", "targets", "snapshot"):
        monkeypatch.delenv(ENV[role])
    r = run(tmp_path, "timestamp", "--repo", str(repo_dir))
    assert r.exit_code == 0 and "signed timestamp v3" in r.output, r.output
    assert client.refresh().timestamp_version == 3
    # the same cron job cannot publish: snapshot is not its key to sign
    with IndexRepo.open(repo_dir, passphrase=asked) as repo:
        repo.add_releases([release("b", "1.0", publisher)])
    r = run(tmp_path, "publish", "--repo", str(repo_dir))
    assert "needs 1 signatures but only 0" in one_sentence(r)
    assert (repo_dir / "keys" / f"{ts_kid}.key").is_file()


# -- offline root ----------------------------------------------------------------------------


def test_offline_root_rotation_is_signed_elsewhere_and_followed(
    tmp_path: Path, publisher, env
) -> None:
    repo_dir, offline = offline_repo(tmp_path, publisher)
    assert not any((repo_dir / "keys" / f"{kid}.key").exists() for kid in root_keys(repo_dir))
    assert sorted(p.stem for p in offline.glob("*.key")) == sorted(root_keys(repo_dir))
    client = client_for(repo_dir, tmp_path / "cache")
    assert client.refresh().root_version == 1
    r = run(tmp_path, "rotate", "--repo", str(repo_dir), "timestamp")
    assert r.exit_code == 0 and "in staged root v2 (index sign-request)" in r.output, r.output
    r = run(tmp_path, "publish", "--repo", str(repo_dir))  # still publishes, with root v1
    assert r.exit_code == 0 and "root v1," in r.output, r.output
    # export, sign on "another machine" with two of the three keys, import each copy
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copies = []
    for n, kid in enumerate(root_keys(repo_dir)[:2]):
        out = elsewhere / f"root-{n}.json"
        r = run(tmp_path, "sign-request", "--repo", str(repo_dir), "--out", str(out))
        assert r.exit_code == 0 and "2 more of the root keys" in r.output, r.output
        r = run(tmp_path, "sign", str(out), "--key", str(offline / f"{kid}.key"))
        assert r.exit_code == 0 and f"signed {out} with key {kid[:16]}" in r.output, r.output
        assert "root: 2 of 3 keys" in r.output  # what the signer is shown
        copies.append(out)
    r = run(tmp_path, "import-signatures", "--repo", str(repo_dir), str(copies[0]))
    assert r.exit_code == 0 and "still needs 1 more of the root keys" in r.output
    r = run(tmp_path, "publish", "--repo", str(repo_dir))  # below threshold: not published
    assert r.exit_code == 0 and client.refresh().root_version == 1
    r = run(tmp_path, "import-signatures", "--repo", str(repo_dir), str(copies[1]))
    assert (
        r.exit_code == 0 and "root v2: 1 new signature(s); it is signed and in effect" in r.output
    )
    assert not (repo_dir / "staged" / "root.json").exists()
    r = run(tmp_path, "publish", "--repo", str(repo_dir))
    assert r.exit_code == 0 and "root v2," in r.output, r.output
    state = client.refresh()
    assert state.root_version == 2 and [x.name for x in client.releases()] == ["hosts"]
    assert run(tmp_path, "verify", "--repo", str(repo_dir)).exit_code == 0


def test_offline_root_keys_rotate_into_another_offline_folder(
    tmp_path: Path, publisher, env
) -> None:
    repo_dir, offline = offline_repo(tmp_path, publisher)
    old = root_keys(repo_dir)
    r = run(tmp_path, "rotate", "--repo", str(repo_dir), "root")
    assert "kept offline: name a folder for the new ones (--keys-dir)" in one_sentence(r)
    usb2 = tmp_path / "usb2"
    r = run(tmp_path, "rotate", "--repo", str(repo_dir), "root", "--keys-dir", str(usb2))
    assert r.exit_code == 0 and "staged root v2" in r.output, r.output
    staged = read_metadata(repo_dir / "staged" / "root.json")
    new = list(staged.signed.roles["root"].keyids)
    assert sorted(staged.signatures) == sorted(new)  # made here, they signed here
    assert sorted(p.stem for p in usb2.glob("*.key")) == sorted(new)
    copy = tmp_path / "root.json"
    shutil.copyfile(repo_dir / "staged" / "root.json", copy)
    for kid in old[1:]:
        r = run(tmp_path, "sign", str(copy), "--key", str(offline / f"{kid}.key"))
        assert r.exit_code == 0 and "counts only if it is one of the root before" in r.output
    [done] = _import(repo_dir, copy)
    assert done.activated and done.added == tuple(old[1:])
    assert run(tmp_path, "publish", "--repo", str(repo_dir)).exit_code == 0
    assert client_for(repo_dir, tmp_path / "cache").refresh().root_version == 2
    places = json.loads((repo_dir / "keys" / "keys.json").read_bytes())["keys"]
    assert not set(old) & set(places)
    assert {places[k]["offline"] for k in new} == {str(usb2.resolve())}


def _staged_rotation(tmp_path: Path, publisher) -> tuple[Path, Path]:
    repo_dir, offline = offline_repo(tmp_path, publisher)
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        repo.rotate("snapshot")
        assert repo.role_version("root") == 1
    return repo_dir, offline


def _import(repo_dir: Path, *files: Path) -> Any:
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        return repo.import_signatures(files)


def test_imported_signatures_are_checked(tmp_path: Path, publisher, env) -> None:
    repo_dir, offline = _staged_rotation(tmp_path, publisher)
    k1, k2, _ = root_keys(repo_dir)
    key1 = ed25519.load_private_key(offline / f"{k1}.key", PASS["root"])
    staged = repo_dir / "staged" / "root.json"
    before = staged.read_bytes()
    # an older root version, validly signed by the root keys: replayed
    old = tmp_path / "replayed.json"
    shutil.copyfile(repo_dir / "published" / "metadata" / "1.root.json", old)
    with pytest.raises(IndexRepoError, match="signs root v1, but the staged root is v2"):
        _import(repo_dir, old)
    # other bytes under the same version
    other = read_metadata(staged)
    other.signed.expires += timedelta(days=1)
    other.sign(tuf_signer(key1), append=True)
    (tmp_path / "other.json").write_bytes(other.to_bytes())
    with pytest.raises(IndexRepoError, match="signs other content than the staged root v2"):
        _import(repo_dir, tmp_path / "other.json")
    # a signature by a key that is no root key (the timestamp key)
    ts_kid = read_metadata(staged).signed.roles["timestamp"].keyids[0]
    wrong = tmp_path / "wrong.json"
    shutil.copyfile(staged, wrong)
    ts_key = ed25519.load_private_key(repo_dir / "keys" / f"{ts_kid}.key", PASS["timestamp"])
    sign_file(wrong, ts_key)
    with pytest.raises(IndexRepoError, match=f"key {ts_kid[:16]}, which is not a key that"):
        _import(repo_dir, wrong)
    # k1's signature over root v1 moved onto the staged bytes
    moved = read_metadata(staged)
    moved.signatures[k1] = Metadata.from_bytes(old.read_bytes()).signatures[k1]
    (tmp_path / "moved.json").write_bytes(moved.to_bytes())
    with pytest.raises(IndexRepoError, match=f"signature by key {k1[:16]} .* does not verify"):
        _import(repo_dir, tmp_path / "moved.json")
    # a good file and a bad one together: nothing is imported
    good = tmp_path / "good.json"
    shutil.copyfile(staged, good)
    sign_file(good, key1)
    with pytest.raises(IndexRepoError):
        _import(repo_dir, good, wrong)
    assert staged.read_bytes() == before
    r = run(tmp_path, "import-signatures", "--repo", str(repo_dir), str(wrong))
    assert "not a key that signs root v2" in one_sentence(r)
    [result] = _import(repo_dir, good)
    assert result.added == (k1,) and not result.activated
    assert k2[:16] in result.waiting_for[0]


def test_a_staged_root_lowering_the_threshold_still_needs_the_old_one(
    tmp_path: Path, publisher, env
) -> None:
    repo_dir, offline = _staged_rotation(tmp_path, publisher)
    k1 = root_keys(repo_dir)[0]
    key1 = ed25519.load_private_key(offline / f"{k1}.key", PASS["root"])
    staged = repo_dir / "staged" / "root.json"
    forged = read_metadata(staged)  # an insider with one root key rewrites the stage
    for kid in list(forged.signed.roles["root"].keyids):
        if kid != k1:
            forged.signed.revoke_key(kid, "root")
    forged.signed.roles["root"].threshold = 1
    forged.signatures.clear()
    forged.sign(tuf_signer(key1))
    staged.write_bytes(forged.to_bytes())
    signed = tmp_path / "forged.json"
    signed.write_bytes(forged.to_bytes())
    [result] = _import(repo_dir, signed)
    assert not result.activated
    others = ", ".join(k[:16] for k in root_keys(repo_dir)[1:])
    assert result.waiting_for == (f"1 more of the old root's keys ({others})",)
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        assert repo.role_version("root") == 1
        repo.publish()
    assert (
        Metadata.from_bytes(
            (repo_dir / "published" / "metadata" / "root.json").read_bytes()
        ).signed.version
        == 1
    )


def test_a_staged_root_cannot_give_a_key_id_another_key(tmp_path: Path, publisher, env):
    repo_dir, _ = _staged_rotation(tmp_path, publisher)
    k1 = root_keys(repo_dir)[0]
    staged = repo_dir / "staged" / "root.json"
    forged = read_metadata(staged)
    mine = ed25519.generate()
    forged.signed.keys[k1] = Key.from_dict(k1, tuf_signer(mine).public_key.to_dict())
    forged.signatures.clear()
    forged.sign(CryptoSigner(mine, forged.signed.keys[k1]))
    staged.write_bytes(forged.to_bytes())
    with pytest.raises(IndexRepoError, match=f"gives key {k1[:16]} another public key"):
        _import(repo_dir, staged)


def test_a_tampered_rotation_record_is_refused(tmp_path: Path, publisher, env) -> None:
    repo_dir, offline = _staged_rotation(tmp_path, publisher)
    after = repo_dir / "staged" / "root.after.json"
    record = json.loads(after.read_bytes())
    record["threshold"] = 2  # bins, hash bins: whatever the rotation re-delegates
    after.write_text(json.dumps(record))
    copy = tmp_path / "root.json"
    shutil.copyfile(repo_dir / "staged" / "root.json", copy)
    for kid in root_keys(repo_dir)[:2]:
        sign_file(copy, ed25519.load_private_key(offline / f"{kid}.key", PASS["root"]))
    with pytest.raises(IndexRepoError, match="does not give snapshot the keys its rotation"):
        _import(repo_dir, copy)
    with IndexRepo.open(repo_dir) as repo:
        assert repo.role_version("root") == 1


def test_unstage_drops_the_rotation_and_its_keys(tmp_path: Path, publisher, env) -> None:
    repo_dir, _ = _staged_rotation(tmp_path, publisher)
    new_kid = read_metadata(repo_dir / "staged" / "root.json").signed.roles["snapshot"].keyids[0]
    with (
        IndexRepo.open(repo_dir, passphrase=Asked()) as repo,
        pytest.raises(IndexRepoError, match="root v2 is staged and waits"),
    ):
        repo.rotate("timestamp")
    r = run(tmp_path, "unstage", "--repo", str(repo_dir), "root")
    assert r.exit_code == 0 and "dropped the staged root v2" in r.output
    assert not (repo_dir / "keys" / f"{new_kid}.key").exists()
    assert (repo_dir / "keys" / "retired" / f"{new_kid}.key").exists()
    r = run(tmp_path, "sign-request", "--repo", str(repo_dir))
    assert "nothing in" in r.output


def test_root_near_expiry_with_offline_keys_is_staged_not_fatal(tmp_path: Path, publisher):
    repo_dir, offline = tmp_path / "repo", tmp_path / "offline"
    now = datetime.now(UTC)
    with IndexRepo.init(
        repo_dir, passphrase=Asked(), expiry=ExpiryPolicy(root=10), offline={"root": offline}
    ):
        pass
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        later = now + timedelta(days=6)  # past half of root's 10 days
        result = repo.publish(now=later)
        assert result.root_version == 1 and "root" not in result.signed
        assert "root v2 waits for the offline root keys" in result.warnings[0]
        assert repo.publish(now=later).warnings  # staged once, still said
    (kid,) = root_keys(repo_dir)
    copy = tmp_path / "root.json"
    shutil.copyfile(repo_dir / "staged" / "root.json", copy)
    sign_file(copy, ed25519.load_private_key(offline / f"{kid}.key", PASS["root"]))
    [done] = _import(repo_dir, copy)
    assert done.activated
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        assert repo.publish(now=later).root_version == 2
    assert client_for(repo_dir, tmp_path / "cache").refresh().root_version == 2


# -- offline targets -------------------------------------------------------------------------


def test_offline_targets_are_staged_at_publish(tmp_path: Path, publisher, env) -> None:
    repo_dir, offline = tmp_path / "repo", tmp_path / "offline"
    with IndexRepo.init(repo_dir, passphrase=Asked(), offline={"targets": offline}):
        pass
    with IndexRepo.open(repo_dir) as repo:
        repo.add_releases([release("hosts", "1.0", publisher)])
    r = run(tmp_path, "publish", "--repo", str(repo_dir))
    assert "targets v1 changed and must be signed by offline keys" in one_sentence(r)
    staged = repo_dir / "staged" / "targets.json"
    (kid,) = [p.stem for p in offline.glob("*.key")]
    root_kid = root_keys(repo_dir)[0]
    wrong = tmp_path / "by-root.json"
    shutil.copyfile(staged, wrong)
    sign_file(wrong, ed25519.load_private_key(repo_dir / "keys" / f"{root_kid}.key", PASS["root"]))
    r = run(tmp_path, "import-signatures", "--repo", str(repo_dir), str(wrong))
    assert "not a key that signs targets v1" in one_sentence(r)
    copy = tmp_path / "targets.json"
    r = run(tmp_path, "sign-request", "--repo", str(repo_dir), "--out", str(copy))
    assert "1 more of the targets keys" in r.output
    assert run(tmp_path, "sign", str(copy), "--key", str(offline / f"{kid}.key")).exit_code == 0
    r = run(tmp_path, "import-signatures", "--repo", str(repo_dir), str(copy))
    assert "targets v1: 1 new signature(s); it is signed and in effect" in r.output
    r = run(tmp_path, "publish", "--repo", str(repo_dir))
    assert r.exit_code == 0, r.output
    client = client_for(repo_dir, tmp_path / "cache")
    assert [x.name for x in client.releases()] == ["hosts"]
    # the next change is staged as targets v2; the signed v1 copy is no use for it
    with IndexRepo.open(repo_dir) as repo:
        repo.add_releases([release("hosts", "1.1", publisher)])
    assert "targets v2 changed" in one_sentence(run(tmp_path, "publish", "--repo", str(repo_dir)))
    r = run(tmp_path, "import-signatures", "--repo", str(repo_dir), str(copy))
    assert "signs targets v1, but the staged targets is v2" in one_sentence(r)
    assert [x.name for x in client.releases()] == ["hosts"]


# -- keys that must not be fooled ------------------------------------------------------------


@pytest.mark.parametrize("one_passphrase", [False, True])
def test_a_timestamp_key_cannot_sign_for_snapshot(
    tmp_path: Path, publisher, one_passphrase: bool
) -> None:
    repo_dir = tmp_path / "repo"
    secret: Any = PASS["timestamp"] if one_passphrase else Asked()
    with IndexRepo.init(repo_dir, passphrase=secret) as repo:
        root = Metadata[Root].from_bytes(repo.root_bytes()).signed
        repo.add_releases([release("a", "1.0", publisher)])
    (snap,) = root.roles["snapshot"].keyids
    (ts,) = root.roles["timestamp"].keyids
    keys = repo_dir / "keys"
    # the timestamp key put where the snapshot key was: its passphrase is not snapshot's,
    # and with one passphrase for all (an old repository) its key id is not snapshot's
    shutil.copyfile(keys / f"{ts}.key", keys / f"{snap}.key")
    refusal = "holds another key than its name says" if one_passphrase else "passphrase is wrong"
    with (
        IndexRepo.open(repo_dir, passphrase=secret) as repo,
        pytest.raises(IndexRepoError, match=refusal),
    ):
        repo.publish()
    # or the keys index pointing the snapshot key at the timestamp key's file
    (keys / f"{snap}.key").unlink()
    index = json.loads((keys / "keys.json").read_bytes())
    index["keys"][snap]["uri"] = f"pmkey:{ts}.key"
    (keys / "keys.json").write_text(json.dumps(index))
    with (
        IndexRepo.open(repo_dir, passphrase=secret) as repo,
        pytest.raises(IndexRepoError, match=refusal),
    ):
        repo.publish()
    index["keys"][snap]["uri"] = "pmkey:../../elsewhere.key"
    (keys / "keys.json").write_text(json.dumps(index))
    with (
        IndexRepo.open(repo_dir, passphrase=secret) as repo,
        pytest.raises(IndexRepoError, match="not allowed"),
    ):
        repo.publish()


def test_a_key_file_swapped_for_a_symlink_is_refused(tmp_path: Path, publisher) -> None:
    repo_dir = tmp_path / "repo"
    with IndexRepo.init(repo_dir, passphrase=Asked()) as repo:
        repo.add_releases([release("a", "1.0", publisher)])
        repo.publish()
        (ts,) = Metadata[Root].from_bytes(repo.root_bytes()).signed.roles["timestamp"].keyids
    key = repo_dir / "keys" / f"{ts}.key"
    moved = tmp_path / "moved.key"
    os.replace(key, moved)
    key.symlink_to(moved)
    with (
        IndexRepo.open(repo_dir, passphrase=Asked()) as repo,
        pytest.raises(IndexRepoError, match="is a symbolic link"),
    ):
        repo.timestamp()
    key.unlink()
    os.mkfifo(key)  # a FIFO would hang a reader that does not check
    with (
        IndexRepo.open(repo_dir, passphrase=Asked()) as repo,
        pytest.raises(IndexRepoError, match="not a regular file"),
    ):
        repo.timestamp()
    key.unlink()
    os.replace(moved, key)
    index = repo_dir / "keys" / "keys.json"
    os.replace(index, tmp_path / "keys.json")
    index.symlink_to(tmp_path / "keys.json")
    with (
        IndexRepo.open(repo_dir, passphrase=Asked()) as repo,
        pytest.raises(IndexRepoError, match=r"keys\.json: is a symbolic link"),
    ):
        repo.timestamp()
    index.unlink()
    os.replace(tmp_path / "keys.json", index)
    os.replace(repo_dir / "keys", tmp_path / "keys-elsewhere")
    (repo_dir / "keys").symlink_to(tmp_path / "keys-elsewhere")
    with (
        IndexRepo.open(repo_dir, passphrase=Asked()) as repo,
        pytest.raises(IndexRepoError, match="symbolic link"),
    ):
        repo.timestamp()


# -- signers from URIs -----------------------------------------------------------------------

KMS: dict[str, ed25519.Ed25519PrivateKey] = {}


class FakeKmsSigner(Signer):  # type: ignore[misc]
    """`testkms:NAME`: a key held by a "KMS" (a dict); `testkms:bad-NAME` signs badly."""

    SCHEME = "testkms"
    signs = 0

    def __init__(self, name: str, public_key: Key) -> None:
        self.name, self._public = name, public_key

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> FakeKmsSigner:
        return cls(priv_key_uri.partition(":")[2], public_key)

    @property
    def public_key(self) -> Key:
        return self._public

    def sign(self, payload: bytes) -> Signature:
        FakeKmsSigner.signs += 1
        key = KMS[self.name.removeprefix("bad-")]
        signed = payload + b"!" if self.name.startswith("bad-") else payload
        return Signature(self._public.keyid, key.sign(signed).hex())


@pytest.fixture
def kms() -> Iterator[None]:
    SIGNER_FOR_URI_SCHEME[FakeKmsSigner.SCHEME] = FakeKmsSigner
    yield
    del SIGNER_FOR_URI_SCHEME[FakeKmsSigner.SCHEME]
    KMS.clear()


def test_a_signer_from_a_registered_uri_scheme(tmp_path: Path, publisher, kms, env) -> None:
    repo_dir = tmp_path / "repo"
    with IndexRepo.init(repo_dir, passphrase=Asked()) as repo:
        repo.add_releases([release("a", "1.0", publisher)])
        repo.publish()
        (ts,) = Metadata[Root].from_bytes(repo.root_bytes()).signed.roles["timestamp"].keyids
    # the timestamp key moves into the "KMS"; its file goes away
    KMS["ts"] = ed25519.load_private_key(repo_dir / "keys" / f"{ts}.key", PASS["timestamp"])
    KMS["other"] = ed25519.generate()
    r = run(tmp_path, "key-uri", "--repo", str(repo_dir), ts[:12], "testkms:other")
    assert "does not sign as the timestamp key" in one_sentence(r)
    r = run(tmp_path, "key-uri", "--repo", str(repo_dir), ts[:12], "nokms:x")
    assert "no signer is registered for nokms: URIs" in one_sentence(r)
    r = run(tmp_path, "key-uri", "--repo", str(repo_dir), ts[:12], "testkms:ts")
    assert r.exit_code == 0 and f"key {ts[:16]} now signs through testkms:" in r.output
    (repo_dir / "keys" / f"{ts}.key").unlink()
    before = FakeKmsSigner.signs
    with IndexRepo.open(repo_dir, passphrase=Asked(())) as repo:  # no passphrase at all
        assert repo.timestamp() == 2
    assert FakeKmsSigner.signs == before + 1
    assert client_for(repo_dir, tmp_path / "cache").refresh().timestamp_version == 2
    r = run(tmp_path, "status", "--repo", str(repo_dir), "--json")
    roles = {x["role"]: x for x in json.loads(r.output)["roles"]}
    assert roles["timestamp"]["keys"] == [{"id": ts, "where": "uri testkms"}]
    # a KMS that hands back a bad signature is caught before anything is written
    index = json.loads((repo_dir / "keys" / "keys.json").read_bytes())
    index["keys"][ts]["uri"] = "testkms:bad-ts"
    (repo_dir / "keys" / "keys.json").write_text(json.dumps(index))
    published = (repo_dir / "published" / "metadata" / "timestamp.json").read_bytes()
    r = run(tmp_path, "timestamp", "--repo", str(repo_dir))
    assert "made a signature that does not verify" in one_sentence(r)
    assert (repo_dir / "published" / "metadata" / "timestamp.json").read_bytes() == published


# -- status ----------------------------------------------------------------------------------


def test_status_shows_every_role_and_warns_ahead_of_expiry(tmp_path: Path, publisher, env) -> None:
    repo_dir, _ = offline_repo(tmp_path, publisher)
    with IndexRepo.open(repo_dir) as repo:
        repo.delegate("acme", publisher.public_key(), ["allow"], publisher_key=publisher)
    now = datetime.now(UTC)
    with IndexRepo.open(repo_dir, passphrase=Asked()) as repo:
        repo.set_hash_bins(4)
        repo.publish(now=now)
        fresh = index_status(repo, now=now)
        roles = {r.role: r for r in fresh.roles}
        assert list(roles) == ["root", "targets", "publisher-acme", "bins", "bin-*", "snapshot",
                               "timestamp"]  # fmt: skip
        assert fresh.warnings == []
        assert roles["root"].threshold == 2 and len(roles["root"].keys) == 3
        assert {k.where for k in roles["root"].keys} == {"offline"}
        assert [k.where for k in roles["targets"].keys] == ["repo"]
        assert [k.where for k in roles["publisher-acme"].keys] == ["publisher"]
        assert roles["bin-*"].count == 4 and roles["bins"].published == "same"
        assert roles["timestamp"].lifetime_days == 1
        assert 0.99 < (roles["timestamp"].days_left or 0) <= 1
        # 20 hours later the timestamp is within a quarter of its day; nothing else is
        later = index_status(repo, now=now + timedelta(hours=20))
        assert len(later.warnings) == 1
        assert later.warnings[0].startswith("timestamp v2 expires on")
        assert "in 4 hours: run pm-plugins index timestamp" in later.warnings[0]
        gone = index_status(repo, now=now + timedelta(days=8))
        assert any(w.startswith("snapshot v2 expired on") for w in gone.warnings)
        repo.add_releases([release("b", "1.0", ed25519.generate())])
        behind = {r.role: r for r in index_status(repo, now=now).roles}
        assert behind["bin-*"].published == "behind"
    r = run(tmp_path, "status", "--repo", str(repo_dir))
    assert r.exit_code == 0, r.output
    assert "root           v1    published; 2 of 3 keys" in r.output
    assert "offline" in r.output and "(in 1.0 days)" in r.output
    r = run(tmp_path, "status", "--repo", str(repo_dir), "--warn-days", "2", "--json")
    assert r.exit_code == 3
    doc = json.loads(r.stdout)
    assert [w.split(" ")[0] for w in doc["warnings"]] == ["timestamp"]
    assert r.stderr.startswith("WARNING: timestamp v2 expires on")
    # a published copy someone changed is said too
    ts = repo_dir / "published" / "metadata" / "timestamp.json"
    ts.write_bytes(ts.read_bytes() + b"\n")
    r = run(tmp_path, "status", "--repo", str(repo_dir))
    assert r.exit_code == 3 and "published timestamp differs" in r.stderr
