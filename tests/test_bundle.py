"""A plugin's Python requirements ship inside its one signed artifact (a zipapp), and only
pure-Python ones: built with the real pip from wheels written here (no network), installed,
booted in the real sandboxed host, and attacked as a hostile author or index would."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from keys.store import TrustStore
from loader.home import Home
from loader.sealed import seal
from registry_client import bundle
from registry_client.bundle import BundleError, PythonRequirements, build_zipapp, check_installed
from registry_client.installer import InstallError, read_package
from registry_client.package import PackageError, build_package, read_source
from tests.boot_helpers import new_publisher, trust, write_source
from tests.conftest import wait_for
from tests.fakes.wheels import wheel
from tests.test_cli import Cli, key_id_of

SCRIPT = b"""#!/usr/bin/env python3
import tinydep
from pm_plugin import Verdict, register_decider, serve

register_decider(lambda conn: (Verdict.BLOCK, tinydep.reason(conn.entity.domain)))
serve()
"""
TINYDEP = {"tinydep/__init__.py": "def reason(domain):\n    return 'tinydep blocks ' + domain\n"}


def source(tmp_path: Path, python: str = 'requires = ["tinydep>=1"]', **wheels: Any) -> Path:
    """A plugin source dir whose `[python]` table is `python` (find-links: its `wheels/`),
    with tinydep's wheel and the wheels named by `wheels` (name -> `tests.fakes.wheels.wheel`
    keyword arguments)."""
    src = write_source(tmp_path, "bundled", executable=SCRIPT)
    wheel(src / "wheels", "tinydep", files=TINYDEP)
    for name, kwargs in wheels.items():
        wheel(src / "wheels", name, **kwargs)
    with (src / "plugin.toml").open("a") as f:
        f.write(f'[python]\n{python}\nfind-links = "wheels"\n')
    return src


def refused(src: Path) -> str:
    """The one sentence `package` refuses `src` with; nothing is written to --out."""
    out = src.parent / "dist"
    with pytest.raises(PackageError) as info:
        build_package(src, new_publisher().key, out)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(src / "plugin.toml") + ": ")
    assert not out.exists() or not any(out.iterdir())
    return message


# -- the main job: carried, signed, installed, booted -----------------------------------------


def test_a_plugin_carries_its_requirement_and_the_booted_host_runs_it(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    kid = key_id_of(cli("keys", "generate", "me").stdout)
    cli("keys", "trust", str(cli.home / "keys" / "me.pub"), "--level", "official")
    cli("package", str(source(tmp_path)), "--key", "me", "--out", str(tmp_path / "dist"))
    package = tmp_path / "dist" / "bundled-1.0.0"
    assert sorted(p.name for p in package.iterdir()) == ["manifest.dsse.json", "plugin"]
    artifact = (package / "plugin").read_bytes()
    assert artifact.startswith(b"#!/usr/bin/env python3\n")
    names = zipfile.ZipFile(package / "plugin").namelist()
    assert names[0] == "__main__.py" and "tinydep/__init__.py" in names
    assert zipfile.ZipFile(package / "plugin").read("__main__.py") == SCRIPT
    out = cli("install", str(package)).stdout
    assert out.startswith(f"bundled 1.0.0: installed, signed by {kid[:12]}...")
    proc = subprocess.Popen(
        cli.argv("boot"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: cli("status", ok=False).returncode == 0, timeout=20)
        status = json.loads(cli("status", "--json").stdout)
        (row,) = [m for m in status["modules"] if m["name"] == "bundled"]
        assert row["state"] == "running" and row["sandbox"]["confined"] is True
        verdict = cli("query", "connection", "--binary", "/usr/bin/curl", "--domain", "a.test")
        assert verdict.stdout.strip() == "block (by bundled): tinydep blocks a.test."
        cli("stop")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=20)


def test_packaging_twice_gives_byte_identical_artifacts(tmp_path: Path) -> None:
    src = source(tmp_path)
    key = new_publisher().key
    first = (build_package(src, key, tmp_path / "one") / "plugin").read_bytes()
    os.utime(src / "plugin", (1, 1))  # the inputs' times are not the artifact's
    second = (build_package(src, key, tmp_path / "two") / "plugin").read_bytes()
    assert first == second
    infos = zipfile.ZipFile(tmp_path / "one" / "bundled-1.0.0" / "plugin").infolist()
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert [i.filename for i in infos[1:]] == sorted(i.filename for i in infos[1:])


def test_one_flipped_byte_inside_a_dependency_refuses_the_install(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    publisher = new_publisher()
    store = trust(home, publisher)
    package = build_package(source(tmp_path), publisher.key, tmp_path / "dist")
    read_package(package, trust=store, dev_mode=False)  # as signed: accepted
    artifact = package / "plugin"
    data = bytearray(artifact.read_bytes())
    at = data.index(b"tinydep blocks ")  # inside the dependency's file, not the script
    data[at] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(InstallError) as info:
        read_package(package, trust=TrustStore.load(home.trust_store), dev_mode=False)
    assert str(info.value).startswith(f"refusing to install {package}: ")


# -- what plugin.toml may say -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "expected"),
    [
        ('requires = ["tinydep >= = 1"]', 'item 1 of field "python.requires" is "tinydep >= = 1"'),
        ('requires = ["--index-url=http://x"]', "which is not a PEP 508 requirement"),
        ('requires = ["tinydep"]\ncolour = "red"', '[python] has the unknown field "colour"'),
        ('requires = "tinydep"', 'field "python.requires" must be a list'),
        ("requires = [1]", 'item 1 of field "python.requires" must be a string'),
        ('index-url = "https://pypi.org/simple"', 'field "python.requires" is missing'),
        ('requires = ["x @ https://e.test/x.whl"]', "names a URL"),
        ('requires = ["grpcio>=1"]', "grpcio, which the host's runtime provides"),
        ('requires = ["pm-plugins"]', "pm-plugins, which the host's runtime provides"),
        ('requires = []\nindex-url = "ftp://x"', 'field "python.index-url" is "ftp://x"'),
    ],
)
def test_a_bad_python_table_is_one_sentence(tmp_path: Path, python: str, expected: str) -> None:
    message = refused(source(tmp_path, python))
    assert expected in message


def test_only_a_python_script_can_carry_requirements(tmp_path: Path) -> None:
    src = source(tmp_path)
    (src / "plugin").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(64))
    assert "the executable of bundled is not a Python script" in refused(src)
    (src / "plugin").write_bytes(b"#!/usr/bin/env python3\ndef (:\n")
    assert "the executable of bundled is not valid Python" in refused(src)


def test_without_a_python_table_the_executable_is_the_artifact(tmp_path: Path) -> None:
    src = write_source(tmp_path, "plain", executable=SCRIPT)
    assert read_source(src).executable == SCRIPT


# -- compiled wheels, direct, transitive or lying -----------------------------------------------

COMPILED = "cp311-cp311-linux_x86_64"


def test_a_compiled_wheel_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    comp = {"files": {"comp/__init__.py": ""}, "tag": COMPILED}
    src = source(tmp_path, 'requires = ["comp"]', comp=comp)
    message = refused(src)
    assert "pip found no pure-Python wheel (py3-none-any) of comp where [python] lets it" in message
    assert "a plugin carries no compiled wheel" in message


def test_a_compiled_wheel_pulled_in_by_a_pure_one_is_refused_naming_both(tmp_path: Path) -> None:
    src = source(
        tmp_path,
        'requires = ["mydep"]',
        mydep={"files": {"mydep/__init__.py": ""}, "requires": ["comp>=1"]},
        comp={"files": {"comp/__init__.py": ""}, "tag": COMPILED},
    )
    assert "no pure-Python wheel (py3-none-any) of comp>=1 (from mydep)" in refused(src)


def test_a_wheel_whose_tag_lies_is_refused_by_what_it_says_inside(tmp_path: Path) -> None:
    liar = {"files": {"liar/__init__.py": ""}, "wheel_tag": COMPILED}
    message = refused(source(tmp_path, 'requires = ["liar"]', liar=liar))
    assert "bundled cannot carry liar 1.0 (named in [python] requires), a compiled wheel " in (
        message
    )
    assert f"({COMPILED})" in message


def test_an_extension_module_in_a_pure_wheel_is_refused(tmp_path: Path) -> None:
    so = "sneaky/_speed.cpython-311-x86_64-linux-gnu.so"
    sneaky = {"files": {"sneaky/__init__.py": "", so: b"\x7fELF"}}
    message = refused(source(tmp_path, 'requires = ["tinydep", "sneaky"]', sneaky=sneaky))
    assert f'cannot carry the compiled file "{so}" of sneaky (whatever its wheel' in message


def test_the_inspection_reads_every_dist_info_tag(tmp_path: Path) -> None:
    info = tmp_path / "comp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: comp\nVersion: 1.0\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: py3-none-any\nTag: {COMPILED}\n")
    with pytest.raises(BundleError, match=rf"comp 1.0 .*a compiled wheel \({COMPILED}\)"):
        check_installed(tmp_path, "demo")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\n")
    with pytest.raises(BundleError, match="its WHEEL file names no tag"):
        check_installed(tmp_path, "demo")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nTag: py2.py3-none-any\n")
    assert check_installed(tmp_path, "demo") == [
        "comp-1.0.dist-info/METADATA",
        "comp-1.0.dist-info/WHEEL",
    ]


# -- a hostile dependency ------------------------------------------------------------------------


def test_a_wheel_climbing_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    climber = {"files": {"climber/__init__.py": "", "../../escaped.py": "x = 1\n"}}
    message = refused(source(tmp_path, 'requires = ["climber"]', climber=climber))
    assert "pip could not install [python] requires" in message
    assert "outside the target directory" in message
    assert not list(tmp_path.rglob("escaped.py"))


def test_a_symlink_in_a_wheel_carries_no_file_of_the_publishers(tmp_path: Path) -> None:
    linky = {"files": {"linky/__init__.py": ""}, "symlinks": {"linky/shadow": "/etc/hostname"}}
    src = source(tmp_path, 'requires = ["tinydep", "linky"]', linky=linky)
    package = build_package(src, new_publisher().key, tmp_path / "dist")
    carried = zipfile.ZipFile(package / "plugin").read("linky/shadow")
    assert carried == b"/etc/hostname"  # the link's text, never what it points at


def test_a_symlink_or_special_file_in_the_installed_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "secret").symlink_to("/etc/hostname")
    with pytest.raises(BundleError, match=r'hold "pkg/secret", a symbolic link'):
        check_installed(tmp_path, "demo")
    (tmp_path / "pkg" / "secret").unlink()
    os.mkfifo(tmp_path / "pkg" / "fifo")
    with pytest.raises(BundleError, match=r'hold "pkg/fifo", not a regular file'):
        check_installed(tmp_path, "demo")


def test_a_main_module_in_a_dependency_is_refused(tmp_path: Path) -> None:
    hijack = {"files": {"__main__.py": "print('not the plugin')\n"}}
    message = refused(source(tmp_path, 'requires = ["hijack"]', hijack=hijack))
    assert 'hijack ships "__main__.py", which would take the place of bundled\'s own' in message


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"json.py": ""}, 'ships the module "json", which would hide Python\'s own'),
        ({"logging/__init__.py": ""}, 'ships the module "logging", which would hide Python'),
        ({"pm_plugin/__init__.py": ""}, 'ships the module "pm_plugin", which would hide the one'),
        ({"google/protobuf/__init__.py": ""}, 'ships the module "google.protobuf", which would'),
        ({"google/__init__.py": ""}, 'ships the module "google", which would hide the one'),
    ],
)
def test_a_dependency_hiding_the_stdlib_or_the_runtime_is_refused(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    message = refused(source(tmp_path, 'requires = ["shadow"]', shadow={"files": files}))
    assert f"shadow {expected}" in message


def test_a_runtime_distribution_pulled_in_is_refused(tmp_path: Path) -> None:
    src = source(
        tmp_path,
        'requires = ["mydep"]',
        mydep={"files": {"mydep/__init__.py": ""}, "requires": ["protobuf"]},
        protobuf={"version": "5.0", "files": {"protobuf_extra/__init__.py": ""}},
    )
    assert "bundled cannot carry protobuf 5.0 (required by mydep): the host's runtime" in (
        refused(src)
    )


def test_a_huge_dependency_tree_is_refused_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle, "MAX_FILES", 8)
    many = {"files": {f"many/m{i}.py": "" for i in range(20)}}
    message = refused(source(tmp_path, 'requires = ["many"]', many=many))
    assert "over the bound of 8 files or" in message
    monkeypatch.setattr(bundle, "MAX_FILES", 100)
    monkeypatch.setattr(bundle, "MAX_BYTES", 4096)
    big = {"files": {"big/__init__.py": "x = 1\n" * 2000}}
    assert "or 4096 bytes that one plugin artifact may have" in refused(
        source(tmp_path / "b", 'requires = ["big"]', big=big)
    )


def test_console_scripts_are_left_out(tmp_path: Path) -> None:
    scripty = {
        "files": {
            "scripty/__init__.py": "def main():\n    pass\n",
            "scripty-1.0.dist-info/entry_points.txt": "[console_scripts]\nscripty = scripty:main\n",
        }
    }
    src = source(tmp_path, 'requires = ["tinydep", "scripty"]', scripty=scripty)
    names = zipfile.ZipFile(build_package(src, new_publisher().key, tmp_path / "d") / "plugin")
    assert not [n for n in names.namelist() if n.startswith("bin/")]
    assert "scripty/__init__.py" in names.namelist()


def test_a_zipapp_runs_from_a_sealed_memfd_as_the_host_starts_it(tmp_path: Path) -> None:
    script = b"#!/usr/bin/env python3\nimport tinydep\nprint(tinydep.reason('x'))\n"
    wheel(tmp_path / "wheels", "tinydep", files=TINYDEP)
    python = PythonRequirements((Requirement("tinydep"),), None, (str(tmp_path / "wheels"),))
    with seal(build_zipapp(script, python, plugin="demo"), "demo") as sealed:
        done = subprocess.run(
            sealed.argv,
            pass_fds=sealed.pass_fds,
            env={"PATH": os.environ["PATH"], "PYTHONSAFEPATH": "1"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert (done.returncode, done.stdout) == (0, "tinydep blocks x\n"), done.stderr


def test_a_source_only_requirement_is_refused_without_running_its_build(tmp_path: Path) -> None:
    src = source(tmp_path, 'requires = ["evil"]')
    marker = tmp_path / "built"
    setup = f"open({str(marker)!r}, 'w').close()\nfrom setuptools import setup\nsetup()\n"
    with tarfile.open(src / "wheels" / "evil-1.0.tar.gz", "w:gz") as tar:
        for name, text in [
            ("evil-1.0/setup.py", setup),
            ("evil-1.0/PKG-INFO", "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    assert "no pure-Python wheel (py3-none-any) of evil where" in refused(src)
    assert not marker.exists()  # pip took wheels only: no setup.py ran at package time
