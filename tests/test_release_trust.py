"""Trust across releases, through a real TUF index over HTTP on 127.0.0.1: a plugin is pinned
to the keys that signed it, versions only go up unless asked, the lock binds what boots,
plugins.json may only narrow a release's types, and privilege needs an official signer or
the user's grant. Each attack of issue 14 that these close is a test here."""
# ruff: noqa: F811  (the `registry` and `home` fixtures are test_registry_install's)

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keys import ed25519
from keys.store import TrustStore
from loader.boot import BootPlan, PlanStatus, plan_boot
from loader.home import Home
from loader.host_modules import CORE_VERSIONS
from loader.lockfile import read_lock
from registry_client.default_index import default_index_dir, ensure_default_registry
from registry_client.installer import InstallError, install_many, read_package
from registry_client.registry_install import (
    choose,
    index_manifest,
    install_from_index,
    open_clients,
)
from registry_client.replacing import Replacing, SignerChange
from registry_client.restore import check_locked, locked_to_restore, releases_for
from tests.test_registry_install import Registry, home, install, make_home, registry  # noqa: F401
from tests.tuf_helpers import make_package, release


def plan(home: Home, dev_mode: bool = False) -> BootPlan:
    return plan_boot(
        home,
        trust=TrustStore.load(home.trust_store),
        dev_mode=dev_mode,
        core_modules=CORE_VERSIONS,
        platform="linux-x86_64",
    )


def row_of(home: Home, name: str) -> tuple[PlanStatus, str]:
    (found,) = [r for r in plan(home).plugins if r.name == name]
    return found.status, found.reason


def state(home: Home) -> tuple[bytes, bytes]:
    return home.plugins_json.read_bytes(), home.lock_file.read_bytes()


def install_with(home: Home, replacing: Replacing, *requests: str, upgrade: bool = False) -> None:
    clients = open_clients(home, lambda _: None)
    chosen = choose(home, requests, clients, upgrade=upgrade)
    trust = TrustStore.load(home.trust_store)
    install_from_index(
        home, chosen, clients, trust=trust, progress=lambda _: None, replacing=replacing
    )


# -- publisher pinning ----------------------------------------------------------------------


@pytest.fixture
def intruder(home: Home, registry: Registry) -> ed25519.Ed25519PrivateKey:
    """Another trusted key (official, even) that publishes hosts 3.0.0."""
    key = ed25519.generate()
    store = TrustStore.load(home.trust_store)
    store.trust(key.public_key(), "official", "another publisher")
    store.save(home.trust_store)
    registry.repo.add_releases([release("hosts", "3.0.0", key)])
    registry.repo.publish()
    return key


def test_a_release_signed_by_another_trusted_key_is_refused_naming_both(
    home: Home, registry: Registry, intruder: ed25519.Ed25519PrivateKey
) -> None:
    install(home, "hosts==1.0.0")
    before = state(home)
    with pytest.raises(InstallError) as err:
        install(home, "hosts", upgrade=True)
    old, new = ed25519.key_id(registry.publisher), ed25519.key_id(intruder)
    assert str(err.value) == (
        f"refusing to install hosts 3.0.0 is signed by {new[:12]}... (official), not by "
        f"{old[:12]}..., which signed the installed 1.0.0: pass --allow-new-signer if the "
        "plugin really changed hands"
    )
    assert state(home) == before


def test_a_new_signer_installs_with_the_users_say_so_and_drops_grants(
    home: Home, registry: Registry, intruder: ed25519.Ed25519PrivateKey
) -> None:
    install(home, "hosts==1.0.0")
    lock = json.loads(home.lock_file.read_text())
    lock["plugins"]["hosts"]["grants"] = ["privileged"]
    home.lock_file.write_text(json.dumps(lock))
    asked: list[str] = []

    def say_no(change: SignerChange) -> bool:
        asked.append(change.question())
        return False

    with pytest.raises(InstallError, match="you did not allow its new signer"):
        install_with(home, Replacing(ask=say_no), "hosts", upgrade=True)
    assert asked and "Has hosts really changed hands?" in asked[0]
    install_with(home, Replacing(new_signer=True), "hosts", upgrade=True)
    locked = read_lock(home.lock_file)["hosts"]
    assert locked.version == "3.0.0" and locked.signers == (ed25519.key_id(intruder),)
    assert locked.grants == ()


def test_a_release_the_pinned_key_signs_again_keeps_the_grants(
    home: Home, registry: Registry
) -> None:
    install(home, "hosts==1.0.0")
    lock = json.loads(home.lock_file.read_text())
    lock["plugins"]["hosts"]["grants"] = ["privileged"]
    home.lock_file.write_text(json.dumps(lock))
    install(home, "hosts==1.2.0")
    assert read_lock(home.lock_file)["hosts"].grants == ("privileged",)


# -- versions only go up --------------------------------------------------------------------


def test_upgrade_never_picks_a_lower_version(
    home: Home, registry: Registry, tmp_path: Path
) -> None:
    newer = make_package(tmp_path / "dist", "hosts", "9.0.0", registry.publisher)
    trust = TrustStore.load(home.trust_store)
    install_many(home, [read_package(newer, trust=trust, dev_mode=False)])
    notes: list[str] = []
    clients = open_clients(home, lambda _: None)
    assert choose(home, ["hosts"], clients, upgrade=True, note=notes.append) == []
    assert notes == [
        "keeping hosts 9.0.0: its newest release there is 2.0.0 in the registries, and "
        "upgrade never goes down"
    ]


def test_installing_an_older_release_is_a_downgrade_that_needs_the_flag(
    home: Home, registry: Registry
) -> None:
    install(home, "hosts==1.2.0")
    before = state(home)
    with pytest.raises(InstallError) as err:
        install(home, "hosts==1.0.0")
    assert str(err.value) == (
        "refusing to downgrade hosts from 1.2.0 to 1.0.0: pass --allow-downgrade to install "
        "an older release"
    )
    assert state(home) == before
    install_with(home, Replacing(downgrade=True), "hosts==1.0.0")
    assert read_lock(home.lock_file)["hosts"].version == "1.0.0"


# -- the lock binds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("sha256", "0" * 64, "its artifact's SHA-256 is"),
        ("version", "1.2.0", "the installed release is 1.0.0 but plugins.lock records 1.2.0"),
        ("signers", ["ab" * 32], "it was installed signed by abababababab..."),
        ("signers", [], "it was installed signed by no key (unsigned)"),
    ],
)
def test_a_release_that_differs_from_the_lock_is_refused(
    home: Home, registry: Registry, field: str, value: object, words: str
) -> None:
    install(home, "hosts==1.0.0")
    assert row_of(home, "hosts")[0] is PlanStatus.VERIFIED
    lock = json.loads(home.lock_file.read_text())
    lock["plugins"]["hosts"][field] = value
    home.lock_file.write_text(json.dumps(lock))
    entries = json.loads(home.plugins_json.read_text())
    home.plugins_json.write_text(json.dumps([{**e, "version": "1.0.0"} for e in entries]))
    status, reason = row_of(home, "hosts")
    assert status is PlanStatus.LOCK_MISMATCH
    assert words in reason


def test_a_signed_release_the_lock_does_not_know_is_refused(home: Home, registry: Registry) -> None:
    install(home, "hosts==1.0.0")
    home.lock_file.write_text('{"version": 2, "plugins": {}}')
    status, reason = row_of(home, "hosts")
    assert status is PlanStatus.LOCK_MISMATCH
    assert reason.startswith("plugin hosts 1.0.0 is not recorded in plugins.lock")


def test_a_malformed_lock_boots_no_plugin_and_says_why(home: Home, registry: Registry) -> None:
    install(home, "hosts==1.0.0")
    home.lock_file.write_text('{"version": 2, "plugins": {"hosts": {}}}')
    result = plan(home)
    assert result.plugins == [] and not result.ok
    assert result.error == f'{home.lock_file}: entry "hosts": field "version" is missing'


def test_a_lock_of_format_1_is_still_read(home: Home, registry: Registry) -> None:
    install(home, "hosts==1.0.0")
    locked = read_lock(home.lock_file)["hosts"]
    old = {"version": locked.version, "sha256": locked.sha256, "signer": locked.signer}
    home.lock_file.write_text(json.dumps({"version": 1, "plugins": {"hosts": old}}))
    assert read_lock(home.lock_file)["hosts"] == dataclasses.replace(locked, registry=None)
    assert row_of(home, "hosts")[0] is PlanStatus.VERIFIED


# -- types and privilege --------------------------------------------------------------------


def test_plugins_json_may_narrow_types_but_never_add_one(home: Home, registry: Registry) -> None:
    install(home, "hosts==1.0.0")  # its manifest declares: resolver
    (entry,) = json.loads(home.plugins_json.read_text())
    home.plugins_json.write_text(json.dumps([entry | {"types": ["resolver", "decider"]}]))
    status, reason = row_of(home, "hosts")
    assert status is PlanStatus.BAD_ENTRY
    assert reason == (
        "plugin hosts: plugins.json gives it type decider, which its signed manifest does not "
        "declare (resolver); types may only be narrowed"
    )


def test_privileged_needs_an_official_signer_or_the_users_grant(
    home: Home, registry: Registry
) -> None:
    install(home, "hosts==1.0.0")  # signed by a community key
    (entry,) = json.loads(home.plugins_json.read_text())
    home.plugins_json.write_text(json.dumps([entry | {"privileged": True}]))
    (row,) = plan(home).plugins
    assert row.runs and not row.privileged
    assert row.privilege_refusal == (
        "plugin hosts runs unprivileged: plugins.json asks for privileged, but it is signed by "
        "a community key, not an official one; grant it with `pm-plugins grant hosts privileged`"
    )
    lock = json.loads(home.lock_file.read_text())
    lock["plugins"]["hosts"]["grants"] = ["privileged"]
    home.lock_file.write_text(json.dumps(lock))
    (row,) = plan(home).plugins
    assert row.runs and row.privileged


# -- no signing secret in the state root ----------------------------------------------------


def test_the_embedded_index_keeps_no_signing_secret_and_still_installs(tmp_path: Path) -> None:
    fresh = Home(tmp_path / "fresh")
    fresh.ensure()
    assert ensure_default_registry(fresh, lambda _: None)
    kept = [p for p in fresh.root.rglob("*") if p.is_file()]
    secrets = [p for p in kept if b"PRIVATE KEY" in p.read_bytes() or p.name == "passphrase"]
    assert secrets == []
    timestamp = json.loads(
        (default_index_dir(fresh) / "published/metadata/timestamp.json").read_text()
    )
    expires = datetime.fromisoformat(timestamp["signed"]["expires"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) > timedelta(days=3000)  # signed once, for good
    install(fresh, "hosts")
    assert read_lock(fresh.lock_file)["hosts"].registry == "default"


def test_secrets_an_older_version_left_in_the_state_root_are_deleted(tmp_path: Path) -> None:
    fresh = Home(tmp_path / "fresh")
    fresh.ensure()
    ensure_default_registry(fresh, lambda _: None)
    left = default_index_dir(fresh)
    (left / "publisher.key").write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    (left / "passphrase").write_text("secret")
    (left / "repo" / "keys").mkdir(parents=True)
    assert not ensure_default_registry(fresh, lambda _: None)
    assert not (left / "publisher.key").exists() and not (left / "passphrase").exists()
    assert not (left / "repo" / "keys").exists()


# -- info shows only signers that verified --------------------------------------------------


def test_info_names_only_keys_that_verified_not_a_decoy_signature_entry(
    home: Home, registry: Registry
) -> None:
    official = ed25519.generate()
    store = TrustStore.load(home.trust_store)
    store.trust(official.public_key(), "official", "the real publisher")
    store.save(home.trust_store)
    decoyed = release("hosts", "4.0.0", registry.publisher)
    envelope = json.loads(decoyed.manifest)
    decoy = {"keyid": ed25519.key_id(official), "sig": envelope["signatures"][0]["sig"]}
    envelope["signatures"].insert(0, decoy)  # claims the official key; does not verify
    manifest = json.dumps(envelope).encode()
    custom = {**decoyed.custom, "publisher_key_id": ed25519.key_id(official)}
    registry.repo.add_releases([dataclasses.replace(decoyed, manifest=manifest, custom=custom)])
    registry.repo.publish()
    (client,) = open_clients(home, lambda _: None)
    (newest,) = [r for r in client.find("hosts") if r.version == "4.0.0"]
    assert newest.publisher_key_id == ed25519.key_id(official)  # what the index claims
    facts = index_manifest(client, newest, TrustStore.load(home.trust_store))
    assert facts is not None and facts.signers == (ed25519.key_id(registry.publisher),)


# -- the lock restores ----------------------------------------------------------------------


def restore(home: Home) -> list[str]:
    lines: list[str] = []
    wanted = locked_to_restore(home)
    clients = open_clients(home, lines.append)
    trust = TrustStore.load(home.trust_store)
    install_from_index(
        home,
        releases_for(wanted, clients),
        clients,
        trust=trust,
        progress=lines.append,
        check=check_locked(wanted),
    )
    return lines


@pytest.fixture
def new_machine(home: Home, registry: Registry, tmp_path: Path) -> Home:
    """A second state root given only the first one's plugins.json and plugins.lock."""
    install(home, "hosts==1.2.0", "allowlist==1.5.0")
    other = make_home(tmp_path / "new-machine", registry)
    for name in ("plugins.json", "plugins.lock"):
        (other.root / name).write_bytes((home.root / name).read_bytes())
    return other


def test_a_copied_lock_restores_exactly_its_releases(new_machine: Home) -> None:
    assert {r.name: r.status for r in plan(new_machine).plugins} == {
        "hosts": PlanStatus.NOT_INSTALLED,
        "allowlist": PlanStatus.NOT_INSTALLED,
    }
    lock_before = read_lock(new_machine.lock_file)
    restore(new_machine)
    assert read_lock(new_machine.lock_file) == lock_before  # 1.2.0, though 2.0.0 exists
    assert {r.name: r.status for r in plan(new_machine).plugins} == {
        "hosts": PlanStatus.VERIFIED,
        "allowlist": PlanStatus.VERIFIED,
    }
    assert locked_to_restore(new_machine) == {}


def test_a_lock_naming_other_bytes_restores_nothing(new_machine: Home) -> None:
    lock = json.loads(new_machine.lock_file.read_text())
    lock["plugins"]["hosts"]["sha256"] = "1" * 64
    new_machine.lock_file.write_text(json.dumps(lock))
    before = state(new_machine)
    with pytest.raises(InstallError) as err:
        restore(new_machine)
    assert str(err.value).startswith("refusing hosts 1.2.0: it is not the locked release")
    assert state(new_machine) == before
    assert not (new_machine.plugins_dir / "allowlist").exists()


def test_install_by_name_on_a_new_machine_does_not_say_nothing_to_do(new_machine: Home) -> None:
    clients = open_clients(new_machine, lambda _: None)
    assert [c.release.version for c in choose(new_machine, ["hosts==1.2.0"], clients)] == ["1.2.0"]


def test_reinstalling_the_same_release_rewrites_nothing(home: Home, registry: Registry) -> None:
    install(home, "hosts==1.0.0")
    before = [
        (p, p.stat().st_mtime_ns, p.stat().st_ino) for p in (home.plugins_json, home.lock_file)
    ]
    trust = TrustStore.load(home.trust_store)
    again = read_package(home.release_dir("hosts", "1.0.0"), trust=trust, dev_mode=False)
    (result,) = install_many(home, [dataclasses.replace(again, registry="test")])
    assert result.unchanged
    after = [
        (p, p.stat().st_mtime_ns, p.stat().st_ino) for p in (home.plugins_json, home.lock_file)
    ]
    assert after == before
