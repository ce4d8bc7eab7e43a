"""RegisterPlugin and UnregisterPlugin: a privileged plugin installs and removes plugins
through the installer, with every check `pm-plugins install ./PKG` makes.

The first tests are real: a signed registrar plugin (tests/fakes/registrar.py) runs in the
booted reference host and calls the plugin manager over its backchannel; the packages are
real signed packages put into its data folder at `register/<name>/`. The attack tests after
them call the booted host's registry directly (the servicer only maps refusals to statuses),
so that each hostile input costs no plugin start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.host import _status_text
from host.reference_host import ReferenceHost
from loader.home import Home
from loader.lockfile import LockFileError, dumps_lock, read_lock
from loader.plugins_json import read_plugins_json
from pm_plugin.wire.portmaster import plugins_pb2
from registry_client.package import build_package
from registry_client.registrar import MAX_PLUGINS_JSON_BYTES, MAX_REGISTERED, Registrar
from tests.boot_helpers import (
    Publisher,
    install_signed,
    new_publisher,
    set_config,
    trust,
    write_source,
)
from tests.conftest import ROOT, wait_for

REGISTRAR = ROOT / "tests" / "fakes" / "registrar.py"


@pytest.fixture
def hosts(home: Home) -> Iterator[list[ReferenceHost]]:
    booted: list[ReferenceHost] = []
    yield booted
    for host in booted:
        host.shutdown()


def boot(home: Home, hosts: list[ReferenceHost], dev_mode: bool = False) -> ReferenceHost:
    host = ReferenceHost(home, dev_mode=dev_mode, installer=Registrar(home, dev_mode=dev_mode))
    hosts.append(host)
    host.boot()
    return host


def package(tmp_path: Path, publisher: Publisher, name: str = "extra", **source: object) -> Path:
    """A signed package of a plugin (the allowlist example as a decider, by default)."""
    work = tmp_path / f"work-{name}-{time.monotonic_ns()}"
    work.mkdir()
    return build_package(write_source(work, name, **source), publisher.key, work / "dist")  # type: ignore[arg-type]


def put(home: Home, source: Path, name: str = "extra", registrar: str = "registrar") -> Path:
    """Copy a package (or source folder) to where `registrar` registers `name` from."""
    target = home.data_dir / registrar / "register" / name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    return target


def install_registrar(
    home: Home, publisher: Publisher, tmp_path: Path, *, privileged: bool = True, **configs: object
) -> None:
    src = write_source(tmp_path, "registrar", executable=REGISTRAR)
    install_signed(home, publisher, src, tmp_path)
    set_config(home, "registrar", privileged=privileged, config={"configs": configs})


def act(host: ReferenceHost, home: Home, verb: str, name: str) -> tuple[str, str]:
    """Make the registrar plugin call `verb` (register, unregister) for `name`; its answer."""
    result = home.data_dir / "registrar" / "results" / f"{verb}.{name}.json"
    result.unlink(missing_ok=True)
    host.decide(binary="/usr/bin/true", domain=f"{verb}.{name}.act")
    assert wait_for(result.exists, 60), f"the registrar never answered {verb} {name}"
    answer = json.loads(result.read_text())
    return answer["code"], answer["details"]


def module_row(host: ReferenceHost, name: str) -> dict[str, object] | None:
    return next((m for m in host.status()["modules"] if m["name"] == name), None)


def nothing_installed(home: Home, name: str = "extra") -> bool:
    return (
        name not in read_lock(home.lock_file)
        and all(e.name != name for e in read_plugins_json(home.plugins_json))
        and not (home.plugins_dir / name).exists()
        and not list(home.root.glob(".register-*"))
    )


# -- real plugins -----------------------------------------------------------------------------


def test_a_privileged_plugin_registers_a_signed_package_then_unregisters_it(
    home: Home, publisher: Publisher, tmp_path: Path, hosts: list[ReferenceHost]
) -> None:
    install_registrar(
        home, publisher, tmp_path, extra={"types": [2], "static_config": {"greeting": "hi"}}
    )
    put(home, package(tmp_path, publisher))
    host = boot(home, hosts)
    assert act(host, home, "register", "extra") == ("OK", "")

    row = module_row(host, "extra")
    assert row is not None and row["state"] == "running" and isinstance(row["pid"], int)
    assert row["registered_by"] == "registrar"
    assert str(row["signer"]).startswith(publisher.key_id[:12])
    assert module_row(host, "registrar")["registered_by"] is None  # type: ignore[index]
    assert "extra was registered by plugin registrar" in _status_text(host.status())
    assert read_lock(home.lock_file)["extra"].registered_by == "registrar"
    (entry,) = [e for e in read_plugins_json(home.plugins_json) if e.name == "extra"]
    assert entry.types == ("decider",) and json.loads(entry.config) == {"greeting": "hi"}
    assert not list(home.root.glob(".register-*"))  # the host's copy is gone
    pid = row["pid"]
    assert isinstance(pid, int)

    assert act(host, home, "unregister", "extra") == ("OK", "")
    assert module_row(host, "extra") is None
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists())
    assert nothing_installed(home)
    assert act(host, home, "register", "extra") == ("OK", "")  # the name is free again
    assert module_row(host, "extra")["state"] == "running"  # type: ignore[index]


def test_a_plugin_registered_while_the_host_boots_starts_once_boot_is_done(
    home: Home, publisher: Publisher, tmp_path: Path, hosts: list[ReferenceHost]
) -> None:
    install_registrar(home, publisher, tmp_path)
    set_config(home, "registrar", config={"on_init": [["register", "extra"]]})
    put(home, package(tmp_path, publisher))
    host = boot(home, hosts)  # the registrar registers extra inside its Configure
    answer = home.data_dir / "registrar" / "results" / "register.extra.json"
    assert json.loads(answer.read_text()) == {"code": "OK", "details": ""}
    row = module_row(host, "extra")
    assert row is not None and row["state"] == "running" and row["registered_by"] == "registrar"


def test_a_privileged_plugin_is_refused_unsigned_and_untrusted_packages(
    home: Home, publisher: Publisher, tmp_path: Path, hosts: list[ReferenceHost]
) -> None:
    install_registrar(home, publisher, tmp_path)
    host = boot(home, hosts)
    put(home, write_source(tmp_path / "unsigned", "extra"))  # plugin.toml + executable
    code, details = act(host, home, "register", "extra")
    assert code == "PERMISSION_DENIED"
    assert "not a signed package" in details and str(home.root) not in details
    assert nothing_installed(home)

    stranger = new_publisher()  # never trusted
    put(home, package(tmp_path, stranger))
    code, details = act(host, home, "register", "extra")
    assert code == "PERMISSION_DENIED" and details.startswith(
        "refusing to register extra: register/extra"
    )
    assert stranger.key_id[:12] in details
    assert nothing_installed(home) and module_row(host, "extra") is None


def test_an_unprivileged_plugin_is_refused_register_and_unregister(
    home: Home, publisher: Publisher, tmp_path: Path, hosts: list[ReferenceHost]
) -> None:
    install_registrar(home, publisher, tmp_path, privileged=False)
    install_signed(home, publisher, write_source(tmp_path, "other"), tmp_path)
    put(home, package(tmp_path, publisher))
    host = boot(home, hosts)
    refusal = 'plugin "registrar" is not privileged'
    code, details = act(host, home, "register", "extra")
    assert code == "PERMISSION_DENIED" and details.startswith(refusal)
    code, details = act(host, home, "unregister", "other")
    assert code == "PERMISSION_DENIED" and details.startswith(refusal)
    assert nothing_installed(home) and module_row(host, "other")["state"] == "running"  # type: ignore[index]


def test_a_symlink_at_the_package_path_is_refused(
    home: Home, publisher: Publisher, tmp_path: Path, hosts: list[ReferenceHost]
) -> None:
    install_registrar(home, publisher, tmp_path)
    outside = package(tmp_path, publisher)  # a valid package, but reached through a link
    register = home.data_dir / "registrar" / "register"
    register.mkdir(parents=True)
    (register / "extra").symlink_to(outside)
    host = boot(home, hosts)
    code, details = act(host, home, "register", "extra")
    assert code == "INVALID_ARGUMENT" and "symbolic link" in details
    assert nothing_installed(home)


# -- hostile input, straight to the booted host's registry ------------------------------------


@pytest.fixture
def host(home: Home, hosts: list[ReferenceHost]) -> ReferenceHost:
    return boot(home, hosts)


def register(
    host: ReferenceHost, name: str = "extra", *, registrar: str = "admin", **config: Any
) -> None:
    assert host.registrations is not None
    host.registrations.register_plugin(registrar, plugins_pb2.PluginConfig(name=name, **config))  # type: ignore[arg-type]


def unregister(host: ReferenceHost, name: str, registrar: str = "admin") -> None:
    assert host.registrations is not None
    host.registrations.unregister_plugin(registrar, name)


def test_a_registered_plugin_runs_and_can_be_unregistered_only_by_its_registrar(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    put(home, package(tmp_path, publisher), registrar="admin")
    register(host, disable_autostart=True)
    assert module_row(host, "extra")["state"] == "disabled"  # type: ignore[index]
    with pytest.raises(PermissionError, match="plugin admin registered it"):
        unregister(host, "extra", registrar="intruder")
    unregister(host, "extra")
    assert nothing_installed(home)
    assert host.registrations is not None
    host.registrations.close()  # the host shuts down: no change starts any more
    with pytest.raises(RuntimeError, match="the host is shutting down"):
        register(host)
    assert nothing_installed(home)


@pytest.mark.parametrize(
    ("name", "config", "refusal", "match"),
    [
        ("../x", {}, ValueError, "a plugin name is"),
        ("Extra", {}, ValueError, "a plugin name is"),
        ("", {}, ValueError, "a plugin name is"),
        ("x\nINFO forged", {}, ValueError, r'"x\\nINFO forged"'),
        ("x" * 65, {}, ValueError, "a plugin name is"),
        ("firewall", {}, PermissionError, "the name of a host module"),
        ("extra", {"plugin_types": [3]}, ValueError, "type reporter, which its signed manifest"),
        ("extra", {"plugin_types": [99]}, ValueError, "plugin type 99 is unknown"),
        ("extra", {"static_config": b"{nope"}, ValueError, "static config"),
        ("extra", {"static_config": b"[" * 40 + b"]" * 40}, ValueError, "static config"),
        ("extra", {"static_config": b'"' + b"x" * 20000 + b'"'}, ValueError, "16384"),
    ],
)
def test_bad_requests_are_refused_and_leave_nothing(
    home: Home,
    host: ReferenceHost,
    publisher: Publisher,
    tmp_path: Path,
    name: str,
    config: dict[str, Any],
    refusal: type[Exception],
    match: str,
) -> None:
    put(home, package(tmp_path, publisher), registrar="admin")
    with pytest.raises(refusal, match=match):
        register(host, name, **config)
    assert nothing_installed(home)


def test_privileged_is_refused_unless_an_official_key_signed_it(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    community = new_publisher()
    trust(home, community, level="community")
    put(home, package(tmp_path, community), registrar="admin")
    with pytest.raises(PermissionError, match="as privileged: it is signed by a community key"):
        register(host, privileged=True)
    assert nothing_installed(home)
    put(home, package(tmp_path, publisher), registrar="admin")
    register(host, privileged=True)
    (entry,) = [e for e in read_plugins_json(home.plugins_json) if e.name == "extra"]
    assert entry.privileged


def test_the_package_must_be_the_named_plugin(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    put(home, package(tmp_path, publisher, "other"), registrar="admin")  # at register/extra
    with pytest.raises(ValueError, match="the package is plugin other"):
        register(host)
    assert nothing_installed(home) and nothing_installed(home, "other")


def test_a_name_someone_installed_is_never_replaced_nor_unregistered(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    install_signed(home, publisher, write_source(tmp_path, "mine"), tmp_path)
    before = read_lock(home.lock_file)
    put(home, package(tmp_path, publisher, "mine", version="2.0.0"), "mine", registrar="admin")
    with pytest.raises(RuntimeError, match="already"):
        register(host, "mine")
    with pytest.raises(PermissionError, match="a person installed it"):
        unregister(host, "mine")
    for core in ("firewall", "config"):
        with pytest.raises(PermissionError, match="host module"):
            unregister(host, core)
    with pytest.raises(LookupError):
        unregister(host, "ghost")
    assert read_lock(home.lock_file) == before


def test_a_plugin_another_needs_is_not_unregistered(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    put(home, package(tmp_path, publisher), registrar="admin")
    register(host)
    put(home, package(tmp_path, publisher, "needy", plugins={"extra": ">=1"}), "needy", "admin")
    register(host, "needy")
    with pytest.raises(RuntimeError, match="needy needs it"):
        unregister(host, "extra")
    assert module_row(host, "extra")["state"] == "running"  # type: ignore[index]
    unregister(host, "needy")
    unregister(host, "extra")


def test_what_the_loader_refuses_is_uninstalled_again(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    put(home, package(tmp_path, publisher, plugins={"ghost": ">=1"}), registrar="admin")
    with pytest.raises(RuntimeError, match=r"needs ghost>=1.*nothing was installed"):
        register(host)
    assert nothing_installed(home) and module_row(host, "extra") is None


def test_hostile_package_folders_are_refused_without_following_or_hanging(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    good = package(tmp_path, publisher)
    secret = tmp_path / "secret"
    secret.write_text("the host's")

    def attempt(match: str) -> None:
        with pytest.raises((ValueError, RuntimeError), match=match):
            register(host)
        assert nothing_installed(home)

    target = put(home, good, registrar="admin")
    (target / "manifest.dsse.json").unlink()
    (target / "manifest.dsse.json").symlink_to(good / "manifest.dsse.json")
    attempt("cannot be opened without following a link")
    target = put(home, good, registrar="admin")
    os.mkfifo(target / "fifo")
    attempt("is not a regular file")
    target = put(home, good, registrar="admin")
    os.link(target / "plugin", target / "again")
    attempt("other hard links")
    target = put(home, good, registrar="admin")
    for i in range(10):
        (target / f"f{i}").write_text("x")
    attempt("more than 8 files")
    target = put(home, good, registrar="admin")
    (target / os.fsdecode(b"odd\n\xff")).write_text("x")  # not UTF-8, a newline: no message
    attempt("is not a plain file name")
    target = put(home, good, registrar="admin")
    with open(target / "plugin", "r+b") as grown:  # sparse: refused by its size, unread
        grown.truncate(600 << 20)
    started = time.monotonic()
    attempt("larger than")
    assert time.monotonic() - started < 5
    shutil.rmtree(home.data_dir / "admin" / "register")
    (home.data_dir / "admin" / "register").symlink_to(good.parent)
    attempt("symbolic link")
    (home.data_dir / "admin" / "register").unlink()
    attempt("there is no package at register/extra")


def test_dev_mode_registers_an_unsigned_source_folder(
    home: Home, hosts: list[ReferenceHost], tmp_path: Path
) -> None:
    host = boot(home, hosts, dev_mode=True)
    put(home, write_source(tmp_path, "extra"), registrar="admin")
    register(host)
    row = module_row(host, "extra")
    assert row is not None and row["state"] == "running" and row["registered_by"] == "admin"
    assert row["signer"] == "unsigned (dev mode)"


def test_a_host_without_an_installer_answers_unimplemented(home: Home) -> None:
    host = ReferenceHost(home, dev_mode=False)
    with pytest.raises(NotImplementedError):
        host.plugins.register_plugin("admin", plugins_pb2.PluginConfig(name="extra"))
    with pytest.raises(NotImplementedError):
        host.plugins.unregister_plugin("admin", "extra")


def test_a_folder_swapped_for_a_link_between_look_and_open_is_refused(
    home: Home,
    host: ReferenceHost,
    publisher: Publisher,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = package(tmp_path, publisher)
    target = put(home, good, registrar="admin")
    real_stat = os.stat

    def stat_then_swap(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        """The plugin wins the race: right after the host looked, the folder is a link."""
        result = real_stat(path, *args, **kwargs)
        if path == "extra" and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            target.symlink_to(good)
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)  # host.package_copy looks with os.stat
    with pytest.raises(ValueError, match="is not a folder, or is a symbolic link"):
        register(host)
    monkeypatch.undo()
    assert target.is_symlink() and nothing_installed(home)


def test_one_plugin_may_hold_only_so_many_registrations(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    fake: dict[str, Any] = {"version": "1.0.0", "sha256": "0" * 64, "signers": [], "registry": None}
    held = {f"p{i}": fake | {"grants": [], "registered_by": "admin"} for i in range(MAX_REGISTERED)}
    home.lock_file.write_text(json.dumps({"version": 2, "plugins": held}))
    put(home, package(tmp_path, publisher), registrar="admin")
    with pytest.raises(RuntimeError, match=f"has registered {MAX_REGISTERED} plugins"):
        register(host)
    assert "extra" not in read_lock(home.lock_file)


def test_plugins_json_never_grows_past_what_the_loader_reads(
    home: Home, host: ReferenceHost, publisher: Publisher, tmp_path: Path
) -> None:
    big = [{"name": "big", "types": ["decider"], "config": "x" * MAX_PLUGINS_JSON_BYTES}]
    home.plugins_json.write_text(json.dumps(big))
    put(home, package(tmp_path, publisher), registrar="admin")
    with pytest.raises(RuntimeError, match=r"plugins\.json would grow past"):
        register(host)
    assert nothing_installed(home)
    assert [e.name for e in read_plugins_json(home.plugins_json)] == ["big"]


def test_the_lock_keeps_registered_by_and_reads_old_locks(tmp_path: Path) -> None:
    path = tmp_path / "plugins.lock"
    entry: dict[str, Any] = {"version": "1.0.0", "sha256": "a" * 64, "signers": []}
    entry["registry"] = None
    path.write_text(json.dumps({"version": 2, "plugins": {"old": entry | {"grants": []}}}))
    assert read_lock(path)["old"].registered_by is None  # a lock from before
    path.write_bytes(dumps_lock(read_lock(path)))
    assert "registered_by" not in path.read_text()  # unchanged for a person's installs
    locked = {"new": dataclasses.replace(read_lock(path)["old"], registered_by="admin")}
    path.write_bytes(dumps_lock(locked))
    assert read_lock(path)["new"].registered_by == "admin"
    doc = json.loads(path.read_text())
    doc["plugins"]["new"]["registered_by"] = "../admin"
    path.write_text(json.dumps(doc))
    with pytest.raises(LockFileError, match='field "registered_by"'):
        read_lock(path)


def test_stale_copies_are_swept_when_a_host_boots_not_when_another_is_made(home: Home) -> None:
    stale = home.root / ".register-left-by-a-killed-host"
    stale.mkdir()
    host = ReferenceHost(home, dev_mode=False, installer=Registrar(home, dev_mode=False))
    assert stale.exists()  # made, not booted: it may be a second host, refused in a moment
    host.boot()
    try:
        assert not stale.exists()
    finally:
        host.shutdown()
