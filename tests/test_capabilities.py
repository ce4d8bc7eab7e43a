"""Capabilities: declared in plugin.toml, signed in the manifest, shown by `install` and `info`,
and never widened by an upgrade without the user's consent.

Real signed packages (`build_package`), a real local TUF index (file:// URL) and the real
`pm-plugins` command in a subprocess; the consent question through a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from index import IndexRepo
from index.intake import release_from_package
from keys import dsse, ed25519
from keys.errors import StrictJSONError
from keys.store import TrustStore
from loader.capabilities import Capabilities, parse_capabilities
from loader.home import Home
from loader.manifest import ManifestError, manifest_to_bytes, parse_manifest
from registry_client.consent import CapabilityRefused, Widening, ask_consent
from registry_client.installer import install_many, read_package
from registry_client.package import PackageError, build_package, read_source
from registry_client.registries import add_registry
from tests.conftest import EXAMPLES
from tests.tuf_helpers import PASSPHRASE, manifest_payload

TOML = """\
name = "{name}"
version = "{version}"
description = "answers from a hosts file"
publisher = "tests"
types = ["resolver"]
executable = "plugin"
[requires]
host = ["resolver"]
"""

#: What each published release of `hosts` declares (TOML lines of its [capabilities]).
HOSTS_RELEASES = {
    "1.0.0": 'read = ["/etc/hosts"]',
    "1.1.0": 'read = ["/etc/hosts"]',  # the same asks
    "2.0.0": 'read = ["/etc/hosts"]\nnetwork = ["tcp:443"]\nprocesses = true',  # more
}


def source(folder: Path, version: str, capabilities: str | None, name: str = "hosts") -> Path:
    """A plugin source folder: the hosts example's executable and a plugin.toml."""
    folder.mkdir(parents=True)
    toml = TOML.format(name=name, version=version)
    if capabilities is not None:
        toml += f"[capabilities]\n{capabilities}\n"
    (folder / "plugin.toml").write_text(toml)
    shutil.copy2(EXAMPLES / "hosts" / "plugin", folder / "plugin")
    return folder


def toml_refusal(tmp_path: Path, capabilities: str) -> str:
    with pytest.raises(PackageError) as info:
        read_source(source(tmp_path / "src", "1.0.0", capabilities))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "src" / "plugin.toml") in message
    return message


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("etc/hosts", "not a plain absolute path"),
        ("/etc/../root/.ssh", "not a plain absolute path"),
        ("/", "not a plain absolute path"),
        ("/etc/", "not a plain absolute path"),
        ("//etc/hosts", "not a plain absolute path"),
        ("/etc/./hosts", "not a plain absolute path"),
        ("/etc/ho\nsts", "not a plain absolute path"),
        ("", "not a plain absolute path"),
    ],
)
def test_a_path_that_is_not_plain_and_absolute_is_refused(path: str, why: str) -> None:
    for field in ("read", "write"):
        with pytest.raises(StrictJSONError) as info:
            parse_capabilities({field: [path]}, where="m.json")
        message = str(info.value)
        assert message.startswith(f'm.json: field "capabilities.{field}" names ')
        assert why in message and "\n" not in message


@pytest.mark.parametrize(
    "entry", ["tcp:0", "tcp:65536", "icmp:1", "tcp:", "tcp:0443", "tcp:\u00b2", "TCP:443", 443]
)
def test_a_bad_network_entry_is_refused(entry: Any) -> None:
    with pytest.raises(StrictJSONError) as info:
        parse_capabilities({"network": [entry]}, where="m.json")
    assert 'field "capabilities.network" has' in str(info.value)
    assert '"any", "tcp:PORT" or "udp:PORT"' in str(info.value)


def test_unknown_fields_and_wrong_types_are_refused() -> None:
    cases: list[tuple[Any, str]] = [
        ({"exec": True}, 'field "capabilities" has the unknown field "exec"'),
        ({"processes": "yes"}, 'field "capabilities.processes" must be true or false'),
        ({"read": "/etc/hosts"}, 'field "capabilities.read" must be a list'),
        ({"read": [1]}, 'item 1 of field "capabilities.read" must be a string'),
        (["read"], 'field "capabilities" must be an object'),
        ({"read": [f"/p{i}" for i in range(33)]}, "lists more than 32 paths"),
    ]
    for value, expected in cases:
        with pytest.raises(StrictJSONError) as info:
            parse_capabilities(value, where="m.json")
        assert expected in str(info.value), str(info.value)


def test_what_parses_is_kept_in_order_without_repeats() -> None:
    caps = parse_capabilities(
        {"read": ["/b", "/a", "/b"], "network": ["udp:53", "tcp:443", "udp:53"]}, where="x"
    )
    assert caps == Capabilities(read=("/b", "/a"), network=("udp:53", "tcp:443"))
    assert parse_capabilities({"network": ["tcp:1", "any"]}, where="x").network == ("any",)
    assert parse_capabilities({}, where="x").is_minimum()


def test_plugin_toml_refusals_are_one_sentence_naming_the_file(tmp_path: Path) -> None:
    assert '"capabilities.read"' in toml_refusal(tmp_path, 'read = ["etc/hosts"]')
    shutil.rmtree(tmp_path / "src")
    assert '"capabilities.network"' in toml_refusal(tmp_path, 'network = ["tcp:99999"]')
    shutil.rmtree(tmp_path / "src")
    assert 'unknown field "exec"' in toml_refusal(tmp_path, "exec = true")
    shutil.rmtree(tmp_path / "src")
    src = source(tmp_path / "src", "1.0.0", None)
    toml = (src / "plugin.toml").read_text().replace("[requires]", 'capabilities = "all"\n[req')
    (src / "plugin.toml").write_text(toml.replace("[req\n", "[requires]\n"))
    with pytest.raises(PackageError, match='field "capabilities" must be an object, not "all"'):
        read_source(src)
    shutil.rmtree(src)
    undeclared = read_source(source(tmp_path / "src", "1.0.0", None)).manifest
    assert undeclared.capabilities == Capabilities()


def test_a_manifest_with_bad_capabilities_is_a_manifest_error() -> None:
    doc = json.loads(manifest_payload("hosts", "1.0.0", b"x"))
    doc["capabilities"] = {"read": ["/etc/hosts"], "network": ["tcp:0"]}
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(doc).encode(), source="hosts/manifest.dsse.json")
    assert str(info.value).startswith('hosts/manifest.dsse.json: field "capabilities.network"')


# -- the signed manifest -----------------------------------------------------------------------


def test_capabilities_survive_package_signature_and_parse(tmp_path: Path) -> None:
    key = ed25519.generate()
    declared = 'read = ["/etc/hosts"]\nwrite = ["/var/lib/hosts"]\nnetwork = ["udp:53"]'
    src = source(tmp_path / "src", "1.0.0", declared + "\nprocesses = true")
    package = build_package(src, key, tmp_path / "dist")
    store = TrustStore()
    store.trust(key.public_key(), "community", "tests")
    release = read_package(package, trust=store, dev_mode=False)
    expected = Capabilities(("/etc/hosts",), ("/var/lib/hosts",), ("udp:53",), True)
    assert release.manifest is not None and release.manifest.capabilities == expected
    payload = dsse.envelope_from_bytes(
        (package / "manifest.dsse.json").read_bytes(), source="x"
    ).payload
    assert json.loads(payload)["capabilities"] == expected.to_json()
    assert manifest_to_bytes(parse_manifest(payload, source="x")) == payload


def test_the_minimum_is_not_written_so_older_manifests_keep_their_bytes(tmp_path: Path) -> None:
    old = manifest_payload("hosts", "1.0.0", b"artifact")  # a manifest from before the field
    manifest = parse_manifest(old, source="old")
    assert manifest.capabilities == Capabilities()
    assert manifest_to_bytes(manifest) == old
    explicit = json.loads(old)
    explicit["capabilities"] = Capabilities().to_json()
    again = parse_manifest(json.dumps(explicit).encode(), source="explicit")
    assert again == manifest and b"capabilities" not in manifest_to_bytes(again)
    package = build_package(EXAMPLES / "allowlist", ed25519.generate(), tmp_path / "dist")
    assert b"capabilities" not in (package / "manifest.dsse.json").read_bytes()


def test_the_examples_declare_what_they_use() -> None:
    declared = {p.name: read_source(p).manifest.capabilities for p in EXAMPLES.iterdir()}
    assert declared.pop("hosts") == Capabilities(read=("/etc/hosts",))
    assert all(caps.is_minimum() for caps in declared.values()), declared


# -- the command line over a real local index --------------------------------------------------


@dataclass
class Published:
    url: str
    root: bytes
    publisher: Ed25519PrivateKey
    dist: Path


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """hosts 1.0.0, 1.1.0 (the same asks) and 2.0.0 (more), signed and in a TUF index."""
    base = tmp_path_factory.mktemp("index")
    publisher = ed25519.generate()
    packages = [
        build_package(source(base / "src" / v, v, caps), publisher, base / "dist")
        for v, caps in HOSTS_RELEASES.items()
    ]
    with IndexRepo.init(base / "repo", passphrase=PASSPHRASE) as repo:
        repo.add_publisher(publisher.public_key(), ["hosts"])
        repo.add_releases([release_from_package(p, repo) for p in packages])
        repo.publish()
        yield Published(repo.published_dir.as_uri(), repo.root_bytes(), publisher, base / "dist")


class Cli:
    """`pm-plugins --home HOME ...` in a subprocess whose stdin is not a terminal."""

    def __init__(self, home: Path, published: Published) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if k != "PM_PLUGINS_DEV_MODE"}
        state = Home(home)
        state.ensure()
        store = TrustStore()
        store.trust(published.publisher.public_key(), "community", "test publisher")
        store.save(state.trust_store)
        add_registry(state, "test", published.url, published.root)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli", "--home", str(self.home), *args]

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def state(self) -> dict[str, Any]:
        """What an upgrade must not change when it is refused."""
        plugins = self.home / "plugins"
        return {
            "lock": (self.home / "plugins.lock").read_bytes(),
            "plugins.json": (self.home / "plugins.json").read_bytes(),
            "releases": sorted(str(p.relative_to(plugins)) for p in plugins.rglob("*")),
            "leftovers": sorted(p.name for p in self.home.glob(".download-*")),
        }


@pytest.fixture
def cli(tmp_path: Path, published: Published) -> Cli:
    return Cli(tmp_path / "home", published)


def test_install_says_what_the_plugin_may_do(cli: Cli, published: Published) -> None:
    lines = cli("install", "hosts==1.0.0").stdout.splitlines()
    assert lines[0].startswith("hosts 1.0.0: installed, signed by")
    assert lines[1:] == [
        "  may: read /etc/hosts",
        "  may: network: none",
        "  may: no child processes",
    ]
    allowlist = build_package(EXAMPLES / "allowlist", published.publisher, cli.home.parent / "d")
    out = cli("install", str(allowlist)).stdout.splitlines()
    assert out[1] == (
        "  may: nothing beyond its own data folder: no other files, no network, no processes"
    )


def test_info_shows_the_newest_and_the_installed_capabilities(cli: Cli) -> None:
    cli("install", "hosts==1.0.0")
    data = json.loads(cli("info", "hosts", "--json").stdout)
    by_version = {d["version"]: d for d in data}
    assert [d["version"] for d in data] == ["2.0.0", "1.1.0", "1.0.0"]
    assert by_version["2.0.0"]["capabilities"] == {
        "read": ["/etc/hosts"],
        "write": [],
        "network": ["tcp:443"],
        "processes": True,
    }
    assert by_version["1.0.0"]["installed"] is True
    assert by_version["1.0.0"]["capabilities"]["read"] == ["/etc/hosts"]
    assert by_version["1.1.0"]["capabilities"] is None and not by_version["1.1.0"]["installed"]
    text = cli("info", "hosts").stdout.splitlines()
    start = text.index("newest release 2.0.0:")
    assert text[start + 1 : start + 4] == [
        "  may: read /etc/hosts",
        "  may: network: TCP port 443",
        "  may: start child processes",
    ]
    assert text[start + 4 : start + 6] == ["installed: 1.0.0", "  may: read /etc/hosts"]


def test_an_upgrade_asking_more_is_refused_without_consent(cli: Cli) -> None:
    cli("install", "hosts==1.1.0")
    before = cli.state()
    done = cli("upgrade", "hosts", ok=False)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line == (
        "Error: refusing to install hosts 2.0.0: it asks for more than the installed 1.1.0 "
        "(network: TCP port 443; start child processes); nothing was installed; pass "
        "--allow-capabilities to allow it"
    )
    assert cli.state() == before
    assert json.loads(cli("list", "--json").stdout)[0]["version"] == "1.1.0"
    out = cli("upgrade", "hosts", "--allow-capabilities").stdout.splitlines()
    assert out[0].startswith("hosts 2.0.0: upgraded from 1.1.0")
    assert "  may: network: TCP port 443" in out
    assert json.loads((cli.home / "plugins.lock").read_text())["plugins"]["hosts"]["version"] == (
        "2.0.0"
    )


def test_the_same_or_less_needs_no_consent(cli: Cli) -> None:
    cli("install", "hosts==1.0.0")
    assert "upgraded from 1.0.0" in cli("install", "hosts==1.1.0").stdout  # the same asks
    cli("upgrade", "hosts", "--allow-capabilities")
    refused = cli("install", "hosts==1.0.0", ok=False)  # a downgrade needs its own flag
    assert "refusing to downgrade hosts from 2.0.0 to 1.0.0: pass --allow-downgrade" in (
        refused.stderr
    )
    out = cli("install", "hosts==1.0.0", "--allow-downgrade").stdout  # fewer asks: no consent
    assert out.startswith("hosts 1.0.0: downgraded from 2.0.0")


def test_a_path_install_replacing_a_version_asks_too(cli: Cli, published: Published) -> None:
    cli("install", str(published.dist / "hosts-1.0.0"))
    before = cli.state()
    done = cli("install", str(published.dist / "hosts-2.0.0"), ok=False)
    assert "--allow-capabilities" in done.stderr and "installed 1.0.0" in done.stderr
    assert cli.state() == before
    cli("install", str(published.dist / "hosts-2.0.0"), "--allow-capabilities")


def run_in_terminal(cli: Cli, answer: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command with a pseudo-terminal as stdin and type `answer`."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            cli.argv(*args),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli.env,
        )
        os.write(controller, answer)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_terminal_is_asked_and_no_means_nothing_changes(cli: Cli) -> None:
    cli("install", "hosts==1.0.0")
    before = cli.state()
    question = (
        "plugin hosts 2.0.0 asks for more than 1.0.0: network: TCP port 443; start child "
        "processes. Allow? [y/N]"
    )
    refused = run_in_terminal(cli, b"n\n", "upgrade", "hosts")
    assert refused.returncode == 1 and question in refused.stderr
    assert "you did not allow what it asks beyond 1.0.0" in refused.stderr
    assert cli.state() == before
    allowed = run_in_terminal(cli, b"y\n", "upgrade", "hosts")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("hosts 2.0.0: upgraded from 1.0.0")


def test_the_library_refuses_by_default_and_rechecks_under_the_lock(
    cli: Cli, published: Published
) -> None:
    home = Home(cli.home)
    store = TrustStore.load(home.trust_store)
    old, new = (
        read_package(published.dist / f"hosts-{v}", trust=store, dev_mode=False)
        for v in ("1.0.0", "2.0.0")
    )
    install_many(home, [old])
    with pytest.raises(CapabilityRefused, match="pass --allow-capabilities"):
        install_many(home, [new])  # no consent given: never silently
    asked: list[Widening] = []

    def yes(widening: Widening) -> bool:
        asked.append(widening)
        return True

    consent = ask_consent(home, [new], ask=yes)
    assert [(w.name, w.version, w.installed) for w in asked] == [("hosts", "2.0.0", "1.0.0")]
    assert asked[0].asks == ("network: TCP port 443", "start child processes")
    with pytest.raises(CapabilityRefused, match="you did not allow"):
        ask_consent(home, [new], ask=lambda w: False)
    # consent for what was asked against 1.0.0 does not cover asks against another version
    shutil.rmtree(home.release_dir("hosts", "1.0.0"))
    (home.plugins_dir / "hosts" / "1.0.0").mkdir()  # a release without a manifest
    with pytest.raises(CapabilityRefused, match=r"\(read /etc/hosts; network"):
        install_many(home, [new], consent=consent)
    assert install_many(home, [new], consent=ask_consent(home, [new], allow=True))
