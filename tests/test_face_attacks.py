"""Attacks on the host's faces for a person: config they can reach, the dashboard, plugins
registered by a plugin, and the dev reload. Every plugin is hostile (signed or not), and so
are a web page the owner visits and another local user.

Real processes throughout: a booted reference host with its control socket, sandboxed
plugins (tests/fakes/face_plugin.py records what each attack did, and every test checks the
host's side too), real HTTP on 127.0.0.1, and Debian's headless Chromium for what only a
browser decides (framing). Each test passes while the defence holds.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from selenium.webdriver.chromium.webdriver import ChromiumDriver
from selenium.webdriver.common.by import By

from dashboard import guard as dashboard_guard
from dashboard import server as dashboard_server
from dashboard.server import DashboardServer
from host import control_requests
from host.control import ControlError, ControlServer, request
from host.reference_host import ReferenceHost
from host.registration import MAX_STATIC_CONFIG_BYTES, entry_of
from keys import dsse
from keys.store import TrustStore
from loader.config_values import SavedValue, read_values, save_value
from loader.home import Home
from loader.lockfile import read_lock
from loader.verify import MANIFEST_PAYLOAD_TYPE
from pm_plugin.wire.portmaster import plugins_pb2
from registry_client.installer import uninstall
from registry_client.plugin_config import purge
from registry_client.registrar import MAX_PLUGINS_JSON_BYTES, MAX_REGISTERED, Registrar
from tests.boot_helpers import (
    Publisher,
    install_signed,
    new_publisher,
    set_config,
    trust,
    write_source,
)
from tests.conftest import _children, _socket_dirs, wait_for
from tests.dashboard_helpers import (
    Booted,
    browser_missing,
    new_browser,
    serve_page,
    state_root,
)
from tests.test_plugin_registration import (
    act,
    install_registrar,
    nothing_installed,
    package,
    put,
    register,
)

FACE = Path(__file__).resolve().parent / "fakes" / "face_plugin.py"


@pytest.fixture(autouse=True)
def no_leftover_processes_or_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    """conftest's per-test check, except for the dashboard's module-wide host (`bench`
    checks the same when the module ends)."""
    if "bench" in request.fixturenames:
        yield
        return
    before, dirs_before = _children(), _socket_dirs()
    yield
    assert wait_for(lambda: not (_children() - before), 10), "processes left behind"
    assert {d for d in _socket_dirs() - dirs_before if d.exists()} == set()


# -- a booted host with its control socket -----------------------------------------------------


def face_source(root: Path, name: str, mode: str = "decider", version: str = "1.0.0") -> Path:
    """A plugin source running tests/fakes/face_plugin.py in `mode`."""
    script = f'#!/bin/sh\nexec "{sys.executable}" "{FACE}" {mode}\n'
    caps = f'read = ["{FACE.parent}"]'
    return write_source(root, name, executable=script.encode(), capabilities=caps, version=version)


@pytest.fixture
def root() -> Iterator[Path]:
    """A short folder (the control socket's path must fit a unix socket address)."""
    path = Path(tempfile.mkdtemp(prefix="face-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(root: Path) -> Home:
    h = Home(root / "h")
    h.ensure()
    return h


class Running:
    """The reference host of `home` booted as `pm-plugins boot` does (with the installer),
    behind its control socket."""

    def __init__(self, home: Home, *, dev_mode: bool = False) -> None:
        self.home = home
        installer = Registrar(home, dev_mode=dev_mode)
        self.host = ReferenceHost(home, dev_mode=dev_mode, installer=installer)
        self.control = ControlServer(
            home.control_socket,
            lambda req: control_requests.answer(self.host, req),
            plugin_of=self.host.plugins.plugin_of,
        )

    def __enter__(self) -> Running:
        self.control.start()
        try:
            self.host.boot()
        except BaseException:
            self.control.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.control.close()
        self.host.shutdown()

    def ask(self, op: str, **args: Any) -> Any:
        return request(self.home.control_socket, op, **args)

    def row(self, name: str) -> dict[str, Any] | None:
        rows = [m for m in self.host.status()["modules"] if m["name"] == name]
        return rows[0] if rows else None

    def act(self, name: str, verb: str) -> dict[str, Any]:
        """Make face plugin `name` do `verb` now; what it recorded."""
        result = self.home.data_dir / name / "results" / f"{verb}.json"
        result.unlink(missing_ok=True)
        self.host.decide(binary="/usr/bin/true", domain=f"{verb}.act")
        assert wait_for(result.exists, 20), f"{name} never did {verb}"
        return dict(json.loads(result.read_text()))


def results(home: Home, name: str, verb: str) -> dict[str, Any]:
    path = home.data_dir / name / "results" / f"{verb}.json"
    assert wait_for(path.exists, 20), f"{name} never recorded {verb}"
    return dict(json.loads(path.read_text()))


def install_face(
    home: Home, publisher: Publisher, work: Path, name: str, mode: str = "decider", **config: Any
) -> None:
    install_signed(home, publisher, face_source(work, name, mode), work)
    if config:
        set_config(home, name, config=config)


# == 1. config a person can reach =================================================================


def test_a_sandboxed_plugin_reaches_neither_config_json_nor_its_lock_nor_the_control_socket(
    home: Home, publisher: Publisher, root: Path
) -> None:
    save_value(home.config_values, "plugins/other/n", SavedValue("int", 7))
    lock = home.config_values.with_name(".config.json.lock")
    targets = [home.config_values, lock, home.plugins_json, home.root / "new.json"]
    config: dict[str, Any] = {
        "on_init": ["files", "control"],
        "paths": [str(p) for p in targets],
        "control": str(home.control_socket),
    }
    install_face(home, publisher, root / "w", "prowler", **config)
    before = {p: p.read_bytes() for p in targets if p.exists()}
    with Running(home) as running:
        files = results(home, "prowler", "files")
        tried = results(home, "prowler", "control")
        assert running.row("prowler")["state"] == "running"  # type: ignore[index]
    assert files and all(v.startswith("refused: ") for v in files.values()), files
    assert tried["reload"].startswith("refused: FileNotFoundError"), tried
    assert {p: p.read_bytes() for p in targets if p.exists()} == before
    assert not (home.root / "new.json").exists()
    assert not list(home.root.glob("*.planted")) and not list(home.root.glob(".*.planted"))
    assert read_values(home.config_values) == {"plugins/other/n": SavedValue("int", 7)}


def test_a_planted_config_json_is_replaced_never_written_through_and_bad_ones_are_not_used(
    home: Home, publisher: Publisher, root: Path
) -> None:
    install_face(home, publisher, root / "w", "keeper", on_init=["secret"])
    outside = root / "outside.json"
    doc = {"format": 1, "values": {"plugins/keeper/token": {"type": "int", "value": 1}}}
    outside.write_text(json.dumps(doc))
    home.config_values.symlink_to(outside)  # a symlink planted in the state root
    with Running(home) as running:
        assert results(home, "keeper", "secret") == {"token": ""}  # a value of another type
        running.ask("config-set", key="keeper/token", value="chosen")
    assert json.loads(outside.read_text()) == doc  # not written through the link
    assert not home.config_values.is_symlink()
    assert read_values(home.config_values)["plugins/keeper/token"].value == "chosen"

    for hostile in (b"{" * 10 + b"x" * (9 << 20), b'{"format": 1, "values": {"plugins/keeper/'
                    b'token": {"type": "string", "value": ["a"]}}}'):  # fmt: skip
        home.config_values.unlink()
        home.config_values.write_bytes(hostile)
        shutil.rmtree(home.data_dir / "keeper" / "results")
        with Running(home) as running:
            assert results(home, "keeper", "secret") == {"token": ""}  # the default applies
            with pytest.raises(ControlError, match=r"config\.json|takes a string, not \["):
                running.ask("config-set", key="keeper/token", value="x")
        assert home.config_values.read_bytes() == hostile


def test_a_key_a_person_names_in_full_never_reaches_another_plugin(
    home: Home, publisher: Publisher, root: Path
) -> None:
    """A plugin called `plugins` registers `victim/token`, which is `plugins/plugins/victim/
    token`; the person, setting the victim's token by its full key while the victim is not
    running, must not hand it to `plugins`."""
    install_face(home, publisher, root / "w", "plugins", on_init=["squat"])
    with Running(home) as running:
        results(home, "plugins", "squat")
        with pytest.raises(ControlError, match="no running plugin registered"):
            running.ask("config-set", key="plugins/victim/token", value="s3cret")
        with pytest.raises(ControlError, match="no running plugin registered"):
            running.ask("config-get", key="plugins/victim/token")
        assert running.ask("config-get", key="plugins/plugins/victim/token")["set"] is False
    assert read_values(home.config_values) == {}


def test_a_plugin_reaches_no_other_plugins_option_through_the_config_service(
    home: Home, publisher: Publisher, root: Path
) -> None:
    install_face(home, publisher, root / "v", "victim", on_init=["secret"])
    install_face(home, publisher, root / "t", "intruder")
    with Running(home) as running:
        results(home, "victim", "secret")
        running.ask("config-set", key="victim/token", value="s3cret")
        tried = running.act("intruder", "trespass")
        shown = running.ask("config-get", key="plugins/victim/token")
        keys = {o["key"] for o in running.ask("config")["options"] if o["plugin"] == "intruder"}
    assert tried and all(v.startswith("refused: ") for v in tried.values()), tried
    assert not any("s3cret" in v for v in tried.values())
    assert (shown["plugin"], shown["value"]) == ("victim", "s3cret")
    assert keys == set()  # it registered nothing, under any name


def test_an_option_registered_again_with_another_type_loses_the_value_set_for_the_old(
    home: Home, publisher: Publisher, root: Path
) -> None:
    install_face(home, publisher, root / "w", "shifty", on_init=["retype"])
    with Running(home) as running:
        assert results(home, "shifty", "retype") == {"type": "int", "value": "1"}
        running.ask("config-set", key="shifty/n", value=5)
        retyped = running.act("shifty", "retype")
        shown = running.ask("config-get", key="shifty/n")
    assert retyped == {"type": "string", "value": json.dumps('string: "text"')}
    assert (shown["type"], shown["value"], shown["set"]) == ("string", "text", False)


def test_a_value_a_person_set_does_not_reach_a_plugin_of_the_same_name_by_another_signer(
    home: Home, publisher: Publisher, root: Path
) -> None:
    install_face(home, publisher, root / "a", "keeper", on_init=["secret"])
    with Running(home) as running:
        assert results(home, "keeper", "secret") == {"token": ""}
        running.ask("config-set", key="keeper/token", value="s3cret")
    uninstall(home, "keeper")  # without --purge: kept "for a reinstall"
    squatter = new_publisher()
    trust(home, squatter, level="community")
    install_face(home, squatter, root / "b", "keeper", on_init=["secret"])
    shutil.rmtree(home.data_dir / "keeper" / "results")
    with Running(home):
        got = results(home, "keeper", "secret")
    assert got == {"token": ""}


def planted_tree(data: Path, outside: Path) -> None:
    """A data folder full of links out of it, and a folder to swap for one."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "out").symlink_to(outside)
    (data / "out-file").symlink_to(outside / "precious")
    (data / "sub").mkdir()
    (data / "sub" / "inner").symlink_to(outside)
    for i in range(300):
        (data / "sub" / f"f{i}").write_text("x")
        (data / f"g{i}").write_text("x")


RACER = r"""
import os, sys, time
data, outside = sys.argv[1], sys.argv[2]
sub, old = os.path.join(data, "sub"), os.path.join(data, "sub.old")
deadline = time.monotonic() + 20
while time.monotonic() < deadline and os.path.exists(data):
    try:
        os.rename(sub, old)
        os.symlink(outside, sub)
        os.unlink(sub)
        os.rename(old, sub)
    except OSError:
        try:
            os.mkdir(sub); os.symlink(outside, os.path.join(sub, "again"))
        except OSError:
            pass
"""


def test_purge_follows_no_link_the_plugin_planted_even_while_it_swaps_folders(
    home: Home, publisher: Publisher, root: Path
) -> None:
    outside = root / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "precious").write_text("the user's")
    (outside / "deep" / "precious").write_text("the user's too")
    before = sorted(str(p) for p in outside.rglob("*"))
    for attempt in range(5):
        install_face(home, publisher, root / f"w{attempt}", "victim")
        save_value(home.config_values, "plugins/victim/n", SavedValue("int", 1))
        data = home.data_dir / "victim"
        planted_tree(data, outside)
        racer = subprocess.Popen([sys.executable, "-c", RACER, str(data), str(outside)])
        try:
            time.sleep(0.05)
            uninstall(home, "victim")
            with contextlib.suppress(OSError):  # a folder renamed under it: purge says so
                purge(home, "victim")
        finally:
            racer.kill()
            racer.wait(timeout=30)
        assert sorted(str(p) for p in outside.rglob("*")) == before
        purge(home, "victim")  # once nothing races it, it completes
        assert not data.exists()
    assert (outside / "precious").read_text() == "the user's"
    home.data_dir.joinpath("victim").symlink_to(outside)  # the folder itself a link
    install_face(home, publisher, root / "wl", "victim")
    uninstall(home, "victim")
    purge(home, "victim")
    assert sorted(str(p) for p in outside.rglob("*")) == before
    assert read_values(home.config_values) == {}


# == 3. RegisterPlugin and UnregisterPlugin ========================================================


@pytest.fixture
def booted(home: Home, publisher: Publisher) -> Iterator[Running]:
    with Running(home) as running:
        yield running


def test_a_file_appended_while_the_host_copies_it_is_refused(
    home: Home, booted: Running, publisher: Publisher, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin appends to its artifact while the host reads it: what the host verifies is
    the copy it made, so the extra bytes are refused with it (never installed unverified)."""
    target = put(home, package(root, publisher), registrar="admin")
    artifact = os.path.realpath(target / "plugin")
    real_read = os.read
    appended: list[int] = []

    def read_then_grow(fd: int, size: int) -> bytes:
        if not appended and os.path.realpath(f"/proc/self/fd/{fd}") == artifact:
            with open(artifact, "ab") as grow:  # the plugin's write, mid-copy
                grow.write(b"\nimport os; os.system('evil')\n" * 100)
            appended.append(fd)
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", read_then_grow)
    with pytest.raises(PermissionError, match="refusing to register extra"):
        register(booted.host)
    monkeypatch.undo()
    assert appended and nothing_installed(home)


def test_hard_links_to_the_state_roots_files_are_refused(
    home: Home, booted: Running, publisher: Publisher, root: Path
) -> None:
    """Under an unconfined host a plugin could link the state root's files into its package
    folder: the host copies none of them (nor writes through one)."""
    save_value(home.config_values, "plugins/x/n", SavedValue("int", 1))
    install_face(home, publisher, root / "w", "present")  # plugins.json and plugins.lock
    for private in (home.trust_store, home.lock_file, home.config_values, home.plugins_json):
        target = put(home, package(root, publisher), registrar="admin")
        before = private.read_bytes()
        (target / "manifest.dsse.json").unlink()
        os.link(private, target / "manifest.dsse.json")
        with pytest.raises(ValueError, match="other hard links"):
            register(booted.host)
        assert private.read_bytes() == before and private.stat().st_nlink == 2
        assert nothing_installed(home)


CONFUSABLES = ["\u0435xtra", "\uff45xtra", "extra\u200b", "extr\u0430", "EXTRA", "ex\u0074ra\u0307"]


@pytest.mark.parametrize("name", CONFUSABLES)
def test_names_that_only_look_like_a_plugins_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="a plugin name is"):
        entry_of(plugins_pb2.PluginConfig(name=name))


def test_a_signed_manifest_with_a_confusable_name_is_refused(
    home: Home, booted: Running, publisher: Publisher, root: Path
) -> None:
    """Signed by a trusted key, registered as `extra`, its manifest says `\u0435xtra`
    (Cyrillic e): refused, and nothing of either name is installed."""
    target = put(home, package(root, publisher), registrar="admin")
    envelope = json.loads((target / "manifest.dsse.json").read_text())
    doc = json.loads(base64.b64decode(envelope["payload"]))
    doc["name"] = "\u0435xtra"
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    signed = dsse.sign(payload, MANIFEST_PAYLOAD_TYPE, [publisher.key])
    (target / "manifest.dsse.json").write_bytes(dsse.envelope_to_bytes(signed))
    with pytest.raises((PermissionError, ValueError), match="refusing to register extra"):
        register(booted.host)
    assert nothing_installed(home) and nothing_installed(home, "\u0435xtra")


def test_a_registrar_can_neither_re_register_itself_nor_escalate_what_it_registered(
    home: Home, publisher: Publisher, root: Path
) -> None:
    """The registrar (a real privileged plugin) registers itself again with more types and
    privilege, and a community-signed plugin it registered as privileged: all refused."""
    install_registrar(
        home, publisher, root / "r", registrar={"types": [2, 3], "privileged": True},
        extra={"types": [2], "privileged": True},
    )  # fmt: skip
    own = package(root, publisher, "registrar", types=("decider", "reporter"))
    put(home, own, "registrar")
    community = new_publisher()
    trust(home, community, level="community")
    put(home, package(root, community))
    with Running(home) as running:
        code, details = act(running.host, home, "register", "registrar")
        assert code == "FAILED_PRECONDITION" and "already has a plugin of that name" in details
        code, details = act(running.host, home, "register", "extra")
        assert code == "PERMISSION_DENIED" and "community key" in details
        row = running.row("registrar")
        assert row is not None and row["state"] == "running" and row["registered_by"] is None
    (entry,) = [e for e in json.loads(home.plugins_json.read_text()) if e["name"] == "registrar"]
    assert entry["types"] == ["decider"]
    assert nothing_installed(home)


def test_each_registrar_holds_its_own_bound_and_one_at_its_bound_stops_no_other(
    home: Home, booted: Running, publisher: Publisher, root: Path
) -> None:
    fake: dict[str, Any] = {"version": "1.0.0", "sha256": "0" * 64, "signers": [], "registry": None}
    held = {f"p{i}": fake | {"grants": [], "registered_by": "hog"} for i in range(32)}
    home.lock_file.write_text(json.dumps({"version": 2, "plugins": held}))
    put(home, package(root, publisher), registrar="hog")
    with pytest.raises(RuntimeError, match="has registered 32 plugins"):
        register(booted.host, registrar="hog")
    put(home, package(root, publisher), registrar="other")
    register(booted.host, registrar="other", disable_autostart=True)
    assert read_lock(home.lock_file)["extra"].registered_by == "other"


def test_one_registrar_cannot_use_up_what_every_registrar_may_register(
    home: Home, booted: Running, publisher: Publisher, root: Path
) -> None:
    """A privileged `hog` registers with the largest static config it may until it is
    refused, before anything is installed: another privileged plugin can still register."""
    config = json.dumps({"pad": "x" * (MAX_STATIC_CONFIG_BYTES - 16)}).encode()
    home.plugins_json.write_text("[]")
    refused = None
    for i in range(MAX_REGISTERED):
        put(home, package(root, publisher, f"hog{i}"), f"hog{i}", registrar="hog")
        try:
            register(booted.host, f"hog{i}", registrar="hog", disable_autostart=True,
                     static_config=config)  # fmt: skip
        except RuntimeError as err:
            refused = (i, str(err))
            break
    assert refused is not None, "the hog registered everything it asked for"
    i, said = refused
    assert "the static config of what plugin hog registered would pass" in said
    assert f"hog{i}" not in read_lock(home.lock_file)  # refused before it was installed
    assert i * MAX_STATIC_CONFIG_BYTES <= MAX_PLUGINS_JSON_BYTES // 4
    put(home, package(root, publisher), registrar="other")
    register(booted.host, registrar="other", disable_autostart=True)
    assert read_lock(home.lock_file)["extra"].registered_by == "other"


# == 4. the dev reload =============================================================================


def test_a_plugin_cannot_reload_itself_through_the_control_socket_even_unconfined(
    home: Home, publisher: Publisher, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `best-effort` without bubblewrap (the plugin unconfined, the socket in its
    reach) the control socket still refuses any process of a plugin, reload included."""
    tools = root / "tools"
    tools.mkdir()
    for tool in ("prlimit", "setpriv"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}:{tools}")
    home.host_settings.write_text(json.dumps({"sandbox": "best-effort"}))
    install_face(home, publisher, root / "w", "prowler", on_init=["control"],
                 control=str(home.control_socket))  # fmt: skip
    with Running(home) as running:
        said = results(home, "prowler", "control")["reload"]
        row = running.row("prowler")
        assert row is not None and row["state"] == "running" and row["restarts"] == 0
        assert not row["sandbox"]["confined"]
    assert said.startswith("ok: ") and '"ok": false' in said, said
    assert "a process of plugin prowler may not use the host's control socket" in said


def steady_row(running: Running) -> tuple[str, Any]:
    row = running.row("steady")
    assert row is not None
    return row["state"], row["pid"]


def test_reload_of_what_is_not_a_plugin_does_no_harm(
    home: Home, publisher: Publisher, root: Path
) -> None:
    install_face(home, publisher, root / "w", "steady")
    files = (home.plugins_json, home.lock_file, home.trust_store)
    before = {f: f.read_bytes() for f in files}
    with Running(home) as running:
        state, pid = steady_row(running)
        assert state == "running"
        cores = {m["name"]: m["state"] for m in running.host.status()["modules"]
                 if m["kind"] == "core"}  # fmt: skip
        for name in ("firewall", "config", "auth", "../x", "", "x\ny", "Steady", "a" * 65,
                     "steady/../firewall", "../../etc/passwd", "ghost", "registrar"):  # fmt: skip
            try:
                said = running.ask("reload", module=name)
            except ControlError as err:
                assert "is not a plugin this host can reload" in str(err), name
            else:
                assert said["state"] in ("refused", "absent"), (name, said)
        assert {m["name"]: m["state"] for m in running.host.status()["modules"]
                if m["kind"] == "core"} == cores  # fmt: skip
        assert steady_row(running) == ("running", pid)
        assert running.host.decide(binary="/usr/bin/true", domain="x.test")["verdict"]
    assert {f: f.read_bytes() for f in files} == before


def test_reload_verifies_again_and_refuses_swapped_bytes_or_an_untrusted_signer(
    home: Home, publisher: Publisher, root: Path
) -> None:
    install_face(home, publisher, root / "w", "steady")
    artifact = home.plugins_dir / "steady" / "1.0.0" / "plugin"
    good = artifact.read_bytes()
    with Running(home) as running:
        _, first_pid = steady_row(running)
        os.chmod(artifact, 0o755)
        artifact.write_bytes(good + b"\necho swapped >&2\n")  # a swap on disk
        said = running.ask("reload", module="steady")
        assert said["state"] == "refused", said
        assert wait_for(lambda: not Path(f"/proc/{first_pid}").exists(), 10)
        assert running.row("steady")["state"] == "refused"  # type: ignore[index]
        assert running.row("steady")["pid"] is None  # type: ignore[index]

        artifact.write_bytes(good)  # the verified bytes again: it runs
        assert running.ask("reload", module="steady")["state"] in ("running", "starting")
        assert wait_for(lambda: steady_row(running)[0] == "running", 20)

        store = TrustStore.load(home.trust_store)
        store.untrust(publisher.key_id)
        store.save(home.trust_store)
        said = running.ask("reload", module="steady")
        assert said["state"] == "refused" and publisher.key_id[:12] in said["reason"], said
        assert steady_row(running)[1] is None


def test_reload_leaves_a_plugin_the_person_disabled_off(
    home: Home, publisher: Publisher, root: Path
) -> None:
    install_face(home, publisher, root / "w", "steady")
    with Running(home) as running:
        running.ask("disable", module="steady")
        said = running.ask("reload", module="steady")
        assert said["state"] == "disabled", said
        assert steady_row(running)[1] is None  # no process
        running.ask("enable", module="steady")
        assert wait_for(lambda: steady_row(running)[0] == "running", 20)


# == 2. the dashboard (last: its module-wide host outlives the tests before it) ====================


def capsy_source(root: Path, version: str, network: str = "") -> Path:
    """The allowlist example as `capsy`; `network` a [capabilities] network entry."""
    caps = f'network = ["{network}"]' if network else ""
    return write_source(root, "capsy", version=version, capabilities=caps)


@dataclass
class Bench:
    booted: Booted
    browser: ChromiumDriver

    @property
    def server(self) -> DashboardServer:
        return self.booted.dashboard

    @property
    def home(self) -> Home:
        return self.booted.home


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """allowlist, `hoarder` (registers all the option bytes it may, in control characters),
    `noisy` (dies with a 1 MiB stderr line), and capsy 1.0.0, whose 2.0.0 in the index asks
    for the network (and is signed by the index's key, not the installed one's)."""
    missing = browser_missing()
    if missing:
        pytest.fail(missing)
    children, dirs = _children(), _socket_dirs()
    top = Path(tempfile.mkdtemp(prefix="facedash-"))
    sources = [
        face_source(top / "src", "hoarder"),
        face_source(top / "src", "noisy", "bigerr"),
        capsy_source(top / "src", "1.0.0"),
    ]
    home = state_root(top, ["allowlist"], sources, [capsy_source(top / "extra", "2.0.0", "any")])
    set_config(home, "hoarder", config={"on_init": ["hoard"]})
    with Booted(home) as booted:
        browser = new_browser(top / "profile")
        try:
            yield Bench(booted, browser)
        finally:
            browser.quit()
    assert wait_for(lambda: _children() <= children, 10), "processes left behind"
    assert {d for d in _socket_dirs() - dirs if d.exists()} == set()
    shutil.rmtree(top, ignore_errors=True)


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_one_plugins_hoard_of_options_hides_no_other_plugins_options(bench: Bench) -> None:
    """One plugin may hold 1 MiB of option definitions; in control characters that is many
    MiB of JSON. The person's listing (the command line and the page) still shows every
    other plugin's options."""
    held = results(bench.home, "hoarder", "hoard")
    assert int(held["held"]) > 100 and held.get("stopped") == "RESOURCE_EXHAUSTED"
    listed = request(bench.home.control_socket, "config")["options"]
    assert "plugins/allowlist/rules" in {o["key"] for o in listed}
    bench.server.live.poll()
    config = bench.server.live.snapshot()[1]["config"]
    assert "error" not in config, config.get("error")
    assert "plugins/allowlist/rules" in {o["key"] for o in config["options"]}


def test_a_huge_stderr_line_reaches_status_and_the_page_bounded(bench: Bench) -> None:
    def noisy() -> dict[str, Any]:
        (row,) = [m for m in bench.booted.host.status()["modules"] if m["name"] == "noisy"]
        return dict(row)

    assert wait_for(lambda: noisy()["state"] == "failed", 30), noisy()
    assert "last stderr lines: EEEE" in noisy()["reason"]
    assert len(noisy()["reason"]) < 16 * 1024
    assert http_get(bench.server.port, f"/?token={bench.server.guard.token}")[0] == 200
    bench.browser.get(bench.server.url)
    cell = '#modules tr[data-key="noisy"] td.reason'
    assert wait_for(lambda: bench.browser.find_elements(By.CSS_SELECTOR, cell), 20)
    shown = bench.browser.find_element(By.CSS_SELECTOR, cell).get_property("textContent")
    assert "EEEE" in str(shown) and len(str(shown)) < 16 * 1024


FRAMING = """<!doctype html><meta charset="utf-8"><title>framing</title>
<iframe id="victim" src="URL" width="900" height="600"></iframe>"""


def test_the_page_cannot_be_framed_clickjacking(bench: Bench) -> None:
    """A page of another origin frames the dashboard (even with the token): the browser
    shows nothing of it, so no click of the owner's can land on it."""
    page = FRAMING.replace("URL", bench.server.url).encode()
    framer = serve_page(page)
    browser = bench.browser
    try:
        browser.get(f"http://localhost:{framer.server_address[1]}/")
        assert wait_for(lambda: browser.find_elements(By.ID, "victim"), 10)
        time.sleep(1.5)  # the frame's load (or its refusal) is done
        browser.switch_to.frame(browser.find_element(By.ID, "victim"))
        try:
            assert browser.find_elements(By.CSS_SELECTOR, "#modules") == []
            assert browser.find_elements(By.CSS_SELECTOR, "button") == []
        finally:
            browser.switch_to.default_content()
    finally:
        framer.shutdown()
        framer.server_close()
    browser.get(bench.server.url)  # the same address, top level: the page is there
    assert wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#modules"), 10)


PROBE = r"""
import http.client, json, socket, sys
port, control = int(sys.argv[1]), sys.argv[2]
out = {}
def get(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    answer = conn.getresponse()
    return [answer.status, answer.read().decode("latin-1")]
for path in ("/", "/static/app.js", "/static/style.css", "/api/events", "/favicon.ico",
             "/index.html", "/static/index.html", "/?token=", "/?token=x"):
    out["GET " + path] = get("GET", path)
out["POST /api/module"] = get("POST", "/api/module", b'{"module": "allowlist"}',
                              {"Content-Type": "application/json"})
out["POST /api/jobs"] = get("POST", "/api/jobs", b'{"kind": "install", "name": "hosts"}',
                            {"Content-Type": "application/json"})
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    raw.sendall(b"BREW /coffee HTCPCP/1.0\r\n\r\n")
    out["garbage"] = [0, raw.recv(65536).decode("latin-1")]
try:
    s = socket.socket(socket.AF_UNIX); s.connect(control); out["control"] = "connected"
except OSError as err:
    out["control"] = type(err).__name__
print(json.dumps(out))
"""


def test_another_local_user_is_served_nothing_without_the_token(bench: Bench) -> None:
    """Another user reaches 127.0.0.1:PORT like anyone: every answer is a refusal and none
    carries the token, the CSRF value or the page; the control socket is not theirs."""
    argv = ["/usr/bin/python3", "-I", "-c", PROBE, str(bench.server.port),
            str(bench.home.control_socket)]  # fmt: skip
    if os.getuid() == 0:  # a real other user
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen.pop("control") in ("PermissionError", "FileNotFoundError")
    guard = bench.server.guard
    for what, (status, body) in seen.items():
        assert not 200 <= status < 300, what
        assert guard.token not in body and guard.csrf not in body, what
        assert "pm-csrf" not in body and "<script" not in body, what
    assert wait_for(lambda: host_state(bench, "allowlist") == "running", 5)


def host_state(bench: Bench, name: str) -> str:
    (row,) = [m for m in bench.booted.host.status()["modules"] if m["name"] == name]
    return str(row["state"])


def test_the_token_is_in_no_process_argument_nor_environment(bench: Bench) -> None:
    """`ps` shows every user each process's arguments: the token is only printed, to the
    owner's terminal."""
    code = (
        "from cli.main import cli; from cli.dashboard import dashboard; "
        "cli.add_command(dashboard); cli()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--home", str(bench.home.root), "dashboard", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]
        while lines[-1] not in ("}\n", ""):
            lines.append(proc.stdout.readline())
        token = json.loads("".join(lines))["url"].split("token=", 1)[1]
        assert len(token) >= 40
        proc_dir = Path(f"/proc/{proc.pid}")
        assert token.encode() not in (proc_dir / "cmdline").read_bytes()
        assert token.encode() not in (proc_dir / "environ").read_bytes()
        assert (proc_dir / "environ").stat().st_mode & 0o077 == 0  # not readable by others
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert token not in err


def test_tokens_and_csrf_values_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Timing is not measured (it would be flaky); what is checked is that each secret is
    compared by hmac.compare_digest over the whole value, never by ==."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # what dashboard.guard calls
    guard = dashboard_guard.Guard(4242)
    headers = Message()
    headers["Host"] = "127.0.0.1:4242"
    near = guard.token[:-1] + ("A" if guard.token[-1] != "A" else "B")
    assert guard.check("GET", headers, [near]) is not None
    assert compared == [(near.encode(), guard.token.encode())]
    headers[dashboard_guard.CSRF_HEADER] = guard.csrf[:-1]
    headers["Content-Type"] = "application/json"
    assert guard.check("POST", headers, [guard.token]) is not None
    assert compared[-1] == (guard.csrf[:-1].encode(), guard.csrf.encode())


@pytest.fixture
def lone_dashboard(root: Path) -> Iterator[DashboardServer]:
    """A dashboard with no host behind it: what its HTTP server holds is all that is tested."""
    server = DashboardServer(Home(root / "nohost"))
    server.start()
    yield server
    server.close()


def test_a_client_trickling_its_request_is_dropped_at_the_deadline(
    lone_dashboard: DashboardServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slowloris: a byte every 0.3 s never trips a per-read timeout of 1 s; the deadline is
    for the whole request."""
    monkeypatch.setattr(dashboard_server._Handler, "timeout", 1.0)
    head = f"GET /?token={lone_dashboard.guard.token} HTTP/1.1\r\nX-Slow: " + "a" * 100
    with socket.create_connection(("127.0.0.1", lone_dashboard.port), timeout=10) as sock:
        started, closed = time.monotonic(), False
        for byte in head.encode():
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > 6:
                break
        if not closed:
            sock.settimeout(0.5)
            try:
                closed = sock.recv(1024) == b""
            except OSError as err:
                closed = not isinstance(err, TimeoutError)
    assert closed, "a trickling client kept its connection past the deadline"
    assert time.monotonic() - started < 6


def handler_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def test_many_idle_connections_hold_a_bounded_number_of_threads(
    lone_dashboard: DashboardServer,
) -> None:
    """A local user opens hundreds of connections and sends nothing: the server holds at
    most its bound of them (the rest are closed at once), and serves the owner once they
    are gone."""
    bound = getattr(dashboard_server, "MAX_CONNECTIONS", 64)
    before = handler_threads()
    flood = [
        socket.create_connection(("127.0.0.1", lone_dashboard.port), timeout=10) for _ in range(300)
    ]
    try:
        time.sleep(1.0)
        assert handler_threads() - before <= bound
    finally:
        for sock in flood:
            sock.close()
    token = lone_dashboard.guard.token
    assert wait_for(lambda: http_get(lone_dashboard.port, f"/?token={token}")[0] == 200, 15)


def test_streams_asked_without_the_token_take_no_place(lone_dashboard: DashboardServer) -> None:
    conns = []
    try:
        for _ in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", lone_dashboard.port, timeout=10)
            conn.request("GET", "/api/events")
            assert conn.getresponse().status == 403
            conns.append(conn)
        token = lone_dashboard.guard.token
        conn = http.client.HTTPConnection("127.0.0.1", lone_dashboard.port, timeout=10)
        conn.request("GET", f"/api/events?token={token}")
        answer = conn.getresponse()
        assert answer.status == 200 and answer.readline() == b"event: state\n"
        conns.append(conn)
    finally:
        for conn in conns:
            conn.close()


def test_an_install_from_the_page_that_needs_consent_is_refused(bench: Bench) -> None:
    """capsy 2.0.0 asks for the network and is signed by another key: from the page (no
    terminal, no person's yes) both the upgrade and an install of that version are refused,
    and capsy 1.0.0 stays."""
    guard, port = bench.server.guard, bench.server.port
    headers = {
        "X-PM-Token": guard.token,
        "X-PM-CSRF": guard.csrf,
        "Content-Type": "application/json",
        "Origin": f"http://127.0.0.1:{port}",
    }
    for kind, name in (("upgrade", "capsy"), ("install", "capsy==2.0.0")):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"kind": kind, "name": name})
        conn.request("POST", "/api/jobs", body=body, headers=headers)
        answer = conn.getresponse()
        assert answer.status == 200
        job_id = json.loads(answer.read())["result"]["id"]
        conn.close()

        def finished(job_id: int = job_id) -> dict[str, Any] | None:
            for job in bench.server.live.snapshot()[1]["jobs"]:
                if job["id"] == job_id and job["state"] in ("done", "refused"):
                    return dict(job)
            return None

        assert wait_for(finished, 60)
        job = finished()
        assert job is not None and job["state"] == "refused", job
        assert "capabilit" in job["error"] or "signer" in job["error"], job
        assert read_lock(bench.home.lock_file)["capsy"].version == "1.0.0"


class _QuietLive:
    """What `Jobs` needs of the live state, and nothing else."""

    def set(self, key: str, value: object) -> None:
        pass

    def poke(self) -> None:
        pass

    def running_versions(self) -> dict[str, str] | None:
        return None


def test_a_page_cannot_pile_up_waiting_jobs(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import jobs as jobs_module

    release = threading.Event()
    monkeypatch.setitem(jobs_module.KINDS, "install", lambda *args: release.wait(10))
    jobs = jobs_module.Jobs(home, _QuietLive())  # type: ignore[arg-type]
    try:
        for i in range(jobs_module.MAX_WAITING):
            jobs.start("install", f"p{i}")
        with pytest.raises(ValueError, match="jobs are waiting or running already"):
            jobs.start("install", "one-more")
    finally:
        release.set()
        jobs.close(timeout=10)
    jobs.start("install", "after")  # they ended: room again
    jobs.close(timeout=10)
