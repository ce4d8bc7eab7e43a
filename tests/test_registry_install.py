"""`install NAME` through a real TUF index over HTTP on 127.0.0.1: resolution, the
publisher check, attacks that must install nothing, crash safety and concurrency."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from index import IndexRepo
from keys import dsse, ed25519
from keys.store import TrustStore
from loader import journal
from loader.boot import plan_boot
from loader.home import Home
from loader.host_modules import CORE_VERSIONS
from registry_client import installer
from registry_client.installer import InstallError, install_many, read_package, uninstall
from registry_client.registries import add_registry, read_registries, remove_registry
from registry_client.registry_install import choose, install_from_index, open_clients
from registry_client.resolve import ResolutionError
from registry_client.tuf_client import RegistryError
from tests.conftest import EXAMPLES
from tests.tuf_helpers import PASSPHRASE, PAYLOAD_TYPE, IndexServer, make_package, release


@dataclass
class Registry:
    repo: IndexRepo
    server: IndexServer
    publisher: Ed25519PrivateKey
    root: bytes

    def target_file(self, target_path: str) -> Path:
        """The published file behind a target path (consistent-snapshot name)."""
        folder, name = target_path.rsplit("/", 1)
        (found,) = (self.repo.published_dir / "targets" / folder).glob(f"*.{name}")
        return found


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    publisher = ed25519.generate()
    repo = IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE)
    needs_allowlist = {"host": [], "plugins": {"allowlist": "<2"}}
    repo.add_releases(
        [
            release("hosts", "1.0.0", publisher),
            release("hosts", "1.2.0", publisher),
            release("hosts", "2.0.0", publisher, requires=needs_allowlist),
            release("allowlist", "1.5.0", publisher),
            release("allowlist", "2.1.0", publisher),
        ]
    )
    repo.publish()
    server = IndexServer(repo.published_dir)
    yield Registry(repo, server, publisher, repo.root_bytes())
    server.close()
    repo.close()


def make_home(path: Path, registry: Registry, *, trusted: bool = True) -> Home:
    home = Home(path)
    home.ensure()
    store = TrustStore()
    if trusted:
        store.trust(registry.publisher.public_key(), "community", "test publisher")
    store.save(home.trust_store)
    add_registry(home, "test", registry.server.url, registry.root)
    return home


@pytest.fixture
def home(tmp_path: Path, registry: Registry) -> Home:
    return make_home(tmp_path / "home", registry)


def install(home: Home, *requests: str, upgrade: bool = False) -> list[str]:
    """Install through the library as the CLI does; returns the progress lines."""
    lines: list[str] = []
    clients = open_clients(home, lines.append)
    chosen = choose(home, requests, clients, upgrade=upgrade)
    install_from_index(
        home, chosen, clients, trust=TrustStore.load(home.trust_store), progress=lines.append
    )
    return lines


def observed(home: Home) -> dict[str, Any]:
    """What a user and the loader would see: configured, locked, and what boot would run."""
    plan = plan_boot(
        home,
        trust=TrustStore.load(home.trust_store),
        dev_mode=False,
        core_modules=CORE_VERSIONS,
        platform="linux-x86_64",
    )
    lock = json.loads(home.lock_file.read_text()) if home.lock_file.exists() else None
    return {
        "plugins.json": home.plugins_json.read_text() if home.plugins_json.exists() else None,
        "lock": lock,
        "boot": sorted((r.name, r.version, r.status.value) for r in plan.plugins),
        "journal": journal.journal_path(home).exists(),
    }


def leftovers(home: Home) -> list[str]:
    found = [p.name for p in home.root.glob(".download-*")]
    if home.plugins_dir.exists():
        found += [p.name for p in home.plugins_dir.glob(".*")]
    return found


def test_install_resolves_and_verifies_over_http(home: Home, registry: Registry) -> None:
    lines = install(home, "hosts")
    assert "downloading hosts 2.0.0 (15 B) from test" in lines
    assert observed(home)["boot"] == [
        ("allowlist", "1.5.0", "verified"),
        ("hosts", "2.0.0", "verified"),
    ]
    lock = observed(home)["lock"]["plugins"]
    assert lock["hosts"]["signers"] == [ed25519.key_id(registry.publisher)]
    assert lock["hosts"]["registry"] == "test"
    assert leftovers(home) == []
    assert "/metadata/timestamp.json" in registry.server.requests


def test_an_untrusted_publisher_installs_nothing(tmp_path: Path, registry: Registry) -> None:
    home = make_home(tmp_path / "home", registry, trusted=False)
    before = observed(home)
    with pytest.raises(InstallError) as err:
        install(home, "hosts==1.2.0")
    text = str(err.value)
    assert text.startswith("refusing to install hosts 1.2.0: plugin hosts is signed by key ")
    assert "which is not in your trust store; run `pm-plugins keys trust`" in text
    assert observed(home) == before
    assert leftovers(home) == []


def test_a_target_whose_bytes_differ_installs_nothing(home: Home, registry: Registry) -> None:
    registry.target_file("hosts/1.2.0/any/hosts.pyz").write_bytes(b"hosts 1.2.0 evil")
    before = observed(home)
    with pytest.raises(RegistryError, match="registry test"):
        install(home, "hosts==1.2.0")
    assert observed(home) == before
    assert leftovers(home) == []


def test_endless_data_installs_nothing(home: Home, registry: Registry) -> None:
    target = registry.target_file("hosts/1.2.0/any/hosts.pyz")
    registry.server.endless.add("/" + str(target.relative_to(registry.repo.published_dir)))
    before = observed(home)
    with pytest.raises(RegistryError):
        install(home, "hosts==1.2.0")
    assert observed(home) == before
    assert registry.server.endless_sent < 8 << 20  # the client stopped reading early
    assert leftovers(home) == []


def test_a_target_not_in_metadata_is_not_installable(home: Home) -> None:
    with pytest.raises(Exception, match="no plugin named ghost is in the index"):
        install(home, "ghost")


def test_upgrade_replaces_the_old_release_only_once_the_new_one_is_in_place(
    home: Home,
) -> None:
    install(home, "hosts==1.0.0")
    assert (home.plugins_dir / "hosts" / "1.0.0").is_dir()
    install(home, "hosts", upgrade=True)
    assert observed(home)["boot"] == [
        ("allowlist", "1.5.0", "verified"),
        ("hosts", "2.0.0", "verified"),
    ]
    assert sorted(p.name for p in (home.plugins_dir / "hosts").iterdir()) == ["2.0.0"]


# -- crash safety: a fault at each step leaves the old state or the new ---------------------


class Crash(Exception):
    pass


def fail_on_call(n: int, real: Callable[..., Any]) -> Callable[..., Any]:
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(f"injected fault on call {n}")
        return real(*args, **kwargs)

    return wrapper


FAULTS = {
    "first release put in place": ("installer", "_put_in_place", 1),
    "second release put in place": ("installer", "_put_in_place", 2),
    "journal written": ("journal", "write_atomic", 1),
    "plugins.json replaced": ("journal", "write_atomic", 2),
    "lock replaced": ("journal", "write_atomic", 3),
    "old releases removed": ("installer", "_remove_other_versions", 1),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("operation", ["install", "upgrade"])
def test_a_crash_at_any_step_leaves_the_old_state_or_the_new(
    tmp_path: Path,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    operation: str,
) -> None:
    def setup(home: Home) -> None:
        install(home, "hosts==1.0.0")

    def change(home: Home) -> None:
        if operation == "install":
            install(home, "hosts==2.0.0")  # upgrades hosts and adds allowlist
        else:
            install(home, "hosts", upgrade=True)

    reference = make_home(tmp_path / "reference", registry)
    setup(reference)
    old = observed(reference)
    change(reference)
    new = observed(reference)
    assert old != new

    home = make_home(tmp_path / "home", registry)
    setup(home)
    module, name, n = FAULTS[fault]
    target = installer if module == "installer" else journal
    monkeypatch.setattr(target, name, fail_on_call(n, getattr(target, name)))
    with pytest.raises(Crash):
        change(home)
    monkeypatch.undo()
    journal.roll_forward(home)  # what the next command or boot does first
    after = observed(home)
    assert after in (old, new), f"{fault}: a mix of old and new: {after}"
    # a second attempt after the crash completes the change
    change(home)
    assert observed(home) == new


# -- concurrency and hostile files ------------------------------------------------------------


def cli(home: Home, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "--home", str(home.root), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_installs_at_once_both_land(home: Home) -> None:
    first = cli(home, "install", "hosts==1.0.0")
    second = cli(home, "install", "allowlist==2.1.0")
    for proc in (first, second):
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert observed(home)["boot"] == [
        ("allowlist", "2.1.0", "verified"),
        ("hosts", "1.0.0", "verified"),
    ]


@pytest.mark.parametrize(
    ("file", "content", "words"),
    [
        ("plugins.lock", b'{"version": 1, "plugins": {"hosts": {}}}', 'field "version" is missing'),
        ("plugins.lock", b"\xff\xfe{}", "plugins.lock"),
        ("plugins.json", b'[{"name": "a", "name": "b"}]', 'has the key "name" twice'),
    ],
)
def test_a_hostile_state_file_is_one_clear_error(
    home: Home, file: str, content: bytes, words: str
) -> None:
    (home.root / file).write_bytes(content)
    proc = cli(home, "install", "hosts==1.0.0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith("Error: ")]
    assert words in line and file in line
    assert not (home.plugins_dir / "hosts").exists()


def test_a_terminal_gets_a_progress_bar_fed_every_byte(home: Home) -> None:
    bars: list[tuple[str, int, list[int]]] = []

    @contextlib.contextmanager
    def bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
        seen: list[int] = []
        bars.append((label, total, seen))
        yield seen.append

    lines: list[str] = []
    clients = open_clients(home, lines.append)
    chosen = choose(home, ["hosts==1.2.0"], clients)
    trust = TrustStore.load(home.trust_store)
    install_from_index(home, chosen, clients, trust=trust, progress=lines.append, bar=bar)
    assert [(label, total, sum(seen)) for label, total, seen in bars] == [
        ("downloading hosts 1.2.0", 15, 15)
    ]
    assert not any(line.startswith("downloading") for line in lines)


def test_an_offline_copy_of_the_index_installs_the_same(tmp_path: Path, registry: Registry) -> None:
    copy = tmp_path / "usb-stick"
    shutil.copytree(registry.repo.published_dir, copy)
    registry.server.close()  # no network from here on
    home = Home(tmp_path / "offline")
    home.ensure()
    store = TrustStore()
    store.trust(registry.publisher.public_key(), "community", "test publisher")
    store.save(home.trust_store)
    add_registry(home, "usb", copy.as_uri(), registry.root)
    install(home, "hosts==1.2.0")
    assert observed(home)["boot"] == [("hosts", "1.2.0", "verified")]
    (copy / "metadata" / "timestamp.json").write_text("{}")  # a damaged copy is refused
    with pytest.raises(RegistryError, match="registry usb"):
        install(home, "allowlist")


# -- dependents are protected ---------------------------------------------------------------


def test_an_install_that_would_break_an_installed_dependent_is_refused(home: Home) -> None:
    install(home, "hosts")  # hosts 2.0.0 needs allowlist<2: allowlist 1.5.0
    before = observed(home)
    with pytest.raises(ResolutionError) as err:
        install(home, "allowlist==2.1.0")
    assert "hosts 2.0.0 (installed) asked for allowlist<2" in str(err.value)
    assert observed(home) == before
    install(home, "allowlist", upgrade=True)  # the newest that keeps hosts working
    assert observed(home) == before


def test_uninstall_counts_dependents_that_cannot_run(home: Home) -> None:
    install(home, "hosts")
    TrustStore().save(home.trust_store)  # nothing verifies now: hosts still needs allowlist
    with pytest.raises(InstallError, match="plugin allowlist is required by hosts"):
        uninstall(home, "allowlist")
    assert (home.plugins_dir / "allowlist").is_dir()
    assert uninstall(home, "allowlist", force=True) == "1.5.0"


def test_a_release_never_changes_under_the_same_version(
    home: Home, registry: Registry, tmp_path: Path
) -> None:
    install(home, "hosts==1.0.0")
    before = observed(home)
    rebuilt = make_package(tmp_path / "pkgs", "hosts", "1.0.0", registry.publisher, artifact=b"x")
    release_ = read_package(rebuilt, trust=TrustStore.load(home.trust_store), dev_mode=False)
    with pytest.raises(InstallError, match=r"hosts 1\.0\.0 is already installed with other bytes"):
        install_many(home, [release_])
    assert observed(home) == before


def test_an_upgrade_takes_the_new_releases_types_unless_the_user_changed_them(
    tmp_path: Path,
) -> None:
    publisher = ed25519.generate()
    with IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE) as repo:
        one = release("multi", "1.0.0", publisher)
        two = release("multi", "2.0.0", publisher)
        two = dataclasses.replace(
            two, manifest=_manifest_with_types(two.manifest, publisher, ["resolver", "reporter"])
        )
        repo.add_releases([one, two])
        repo.publish()
        root, published = repo.root_bytes(), repo.published_dir
    home = Home(tmp_path / "home")
    home.ensure()
    store = TrustStore()
    store.trust(publisher.public_key(), "community", "p")
    store.save(home.trust_store)
    add_registry(home, "local", str(published), root)
    install(home, "multi==1.0.0")
    install(home, "multi", upgrade=True)
    (entry,) = json.loads(home.plugins_json.read_text())
    assert entry["types"] == ["resolver", "reporter"]


def _manifest_with_types(envelope: bytes, key: Ed25519PrivateKey, types: list[str]) -> bytes:
    payload = json.loads(dsse.envelope_from_bytes(envelope, source="test").payload)
    payload["types"] = types
    data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return dsse.envelope_to_bytes(dsse.sign(data, PAYLOAD_TYPE, [key]))


def test_two_first_commands_at_once_publish_the_default_index_once(tmp_path: Path) -> None:
    home = Home(tmp_path / "fresh")
    procs = [cli(home, "install", name) for name in ("hosts", "allowlist")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert [r.name for r in read_registries(home)] == ["default"]
    assert len(TrustStore.load(home.trust_store).keys) == 1
    assert sorted(n for n, _, status in observed(home)["boot"] if status == "verified") == [
        "allowlist",
        "hosts",
    ]
    # removing every registry does not bring the embedded one back
    remove_registry(home, "default")
    proc = cli(home, "search")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "no registry is configured" in err


# -- installs from disk, interrupted installs, dev rebuilds -----------------------------------


def local(
    home: Home, folder: Path, key: Ed25519PrivateKey, name: str, version: str, **kw: Any
) -> None:
    """Install a package built on disk (as `pm-plugins install ./PATH` does)."""
    package = make_package(folder, name, version, key, **kw)
    trust = TrustStore.load(home.trust_store)
    install_many(home, [read_package(package, trust=trust, dev_mode=False)])


def test_a_path_install_that_would_break_a_dependent_is_refused(
    home: Home, registry: Registry, tmp_path: Path
) -> None:
    key = registry.publisher
    local(home, tmp_path / "a", key, "allowlist", "1.5.0")
    needs = {"host": [], "plugins": {"allowlist": "<2"}}
    local(home, tmp_path / "b", key, "hosts", "2.0.0", requires=needs)
    before = observed(home)
    with pytest.raises(InstallError) as err:
        local(home, tmp_path / "c", key, "allowlist", "2.1.0")
    assert str(err.value) == (
        "installing allowlist 2.1.0 would break hosts 2.0.0, which needs allowlist<2; "
        "upgrade or uninstall hosts first"
    )
    assert observed(home) == before


def test_an_interrupted_install_takes_back_what_it_put_in_place(
    home: Home, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "record", fail_on_call(1, journal.record))
    with pytest.raises(Crash):
        local(home, tmp_path / "a", registry.publisher, "allowlist", "1.0.0")
    monkeypatch.undo()
    assert not (home.plugins_dir / "allowlist").exists() or not any(
        (home.plugins_dir / "allowlist").iterdir()
    )
    local(home, tmp_path / "b", registry.publisher, "allowlist", "1.0.0", artifact=b"other")
    assert observed(home)["boot"] == [("allowlist", "1.0.0", "verified")]


def test_a_dev_rebuild_of_an_unsigned_version_replaces_it_in_one_step(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    src = tmp_path / "src"
    shutil.copytree(EXAMPLES / "hosts", src)
    install_many(home, [read_package(src, trust=TrustStore(), dev_mode=True)])
    (src / "plugin").write_bytes((src / "plugin").read_bytes() + b"\n# rebuilt\n")
    install_many(home, [read_package(src, trust=TrustStore(), dev_mode=True)])
    installed = home.release_dir("hosts", "1.0.0") / "plugin"
    assert installed.read_bytes().endswith(b"# rebuilt\n")
    assert [p.name for p in home.plugins_dir.iterdir() if p.name.startswith(".")] == []


def test_uninstall_counts_a_dependent_whose_artifact_is_missing(
    home: Home, registry: Registry
) -> None:
    install(home, "hosts")
    next((home.plugins_dir / "hosts" / "2.0.0").glob("*.pyz")).unlink()
    with pytest.raises(InstallError, match="plugin allowlist is required by hosts"):
        uninstall(home, "allowlist")


def test_a_host_module_name_is_refused_at_install(
    home: Home, registry: Registry, tmp_path: Path
) -> None:
    with pytest.raises(InstallError, match="refusing to install resolver: it has the name of"):
        local(home, tmp_path / "a", registry.publisher, "resolver", "1.0.0")
    assert observed(home)["plugins.json"] is None


def test_reading_the_state_creates_nothing(tmp_path: Path) -> None:
    home = Home(tmp_path / "never-written")
    with journal.reading(home):
        pass
    assert not home.root.exists()
