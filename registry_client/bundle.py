"""A Python plugin's requirements shipped inside its one signed artifact: a zipapp.

Why this exists: a publisher signs one artifact, and the host runs exactly those bytes from a
sealed in-memory copy, inside a sandbox whose runtime is read-only and holds only the host's
Python, the SDK and grpcio. A plugin that imports anything else must carry it. When
`plugin.toml` has a `[python]` table, `pm-plugins package` builds the artifact as a zipapp:
the plugin's script as `__main__.py` beside its requirements, installed by pip at package
time into a temporary folder. The manifest pins the digest of the whole zip, so the
signature covers every byte of every dependency, and the installed plugin needs nothing else
installed.

    [python]
    requires = ["tinydep>=1", "requests>=2"]     # PEP 508 strings
    index-url = "https://pypi.org/simple"          # optional: where pip looks
    find-links = ["wheels"]                        # optional: folders or URLs of wheels
                                                   # (relative to plugin.toml; without
                                                   # index-url, pip looks nowhere else)

Only pure-Python wheels are carried: Python imports no compiled module from a zip, and a
compiled wheel is bound to one Python version the manifest's `platform` cannot name. pip is
asked for wheels tagged `py3-none-any` only (so `requests` gets `charset_normalizer`'s pure
wheel, not its compiled one), and what it installed is checked again before anything is
zipped: every WHEEL tag pure, no extension module whatever the tags say, no symlink or
special file, no top-level `__main__` or module hiding the standard library or the host's
runtime (`pm_plugin`, `grpc`, `google.protobuf`, which the runtime provides), bounded files
and bytes. Any of these is a one-sentence refusal and nothing is written.

The zip is reproducible: entries in a fixed order with fixed dates and modes, stored
uncompressed (deflate output differs between zlib builds), console scripts left out (pip
writes the publisher's interpreter path into them), so the same script and wheels give the
same bytes and the same SHA-256.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.machinery
import io
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PathDistribution
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import parse_tag
from packaging.utils import canonicalize_name

from keys.errors import StrictJSONError
from loader.boot import MAX_ARTIFACT_BYTES
from loader.fields import check_unknown, expect, show

PYTHON_FIELDS = ("requires", "index-url", "find-links")
INTERPRETER = "/usr/bin/env python3"
#: Distributions the host's runtime provides (the SDK is `pm-plugins`); never bundled.
RUNTIME_DISTRIBUTIONS = frozenset({"pm-plugins", "grpcio", "grpcio-health-checking", "protobuf"})
#: The runtime's own modules: a bundled copy (first on sys.path) would hide them.
RUNTIME_MODULES = frozenset({"pm_plugin", "grpc", "grpc_health", "google.protobuf"})
EXTENSIONS = (*importlib.machinery.EXTENSION_SUFFIXES, ".so", ".pyd", ".dylib", ".dll")
MAX_FILES = 20_000  # zip64 starts at 65,535 entries; a plugin needs far fewer
MAX_BYTES = MAX_ARTIFACT_BYTES  # the loader reads no larger artifact
PIP_TIMEOUT = 900.0
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_WHY_PURE = "Python imports no compiled module from a zipapp"
_NO_MATCH = "No matching distribution found for "


class BundleError(Exception):
    """The requirements cannot be carried; one sentence (the caller names plugin.toml)."""


@dataclass(frozen=True)
class PythonRequirements:
    """The `[python]` table: what pip installs into the zipapp, and where it looks."""

    requires: tuple[Requirement, ...]
    index_url: str | None = None
    find_links: tuple[str, ...] = ()


def parse_python(value: Any, *, where: str, base: Path) -> PythonRequirements:
    """Check the `[python]` table of `where`; relative find-links are taken from `base`.

    Raises StrictJSONError (a field's type, an unknown key) or BundleError (a requirement)."""
    expect(value, dict, where=where, what="[python]")
    check_unknown(value, PYTHON_FIELDS, where=where, what="[python]")
    if "requires" not in value:
        raise StrictJSONError(f'{where}: field "python.requires" is missing')
    items = expect(value["requires"], list, where=where, what='field "python.requires"')
    requires = []
    for i, item in enumerate(items, 1):
        expect(item, str, where=where, what=f'item {i} of field "python.requires"')
        requires.append(_requirement(item, i))
    index_url = value.get("index-url")
    expect(index_url, (str, type(None)), where=where, what='field "python.index-url"')
    if index_url is not None and urlsplit(index_url).scheme not in ("https", "http", "file"):
        raise BundleError(f'field "python.index-url" is {show(index_url)}, which is not a URL')
    links = value.get("find-links", [])
    expect(links, (str, list), where=where, what='field "python.find-links"')
    links = [links] if isinstance(links, str) else links
    for i, item in enumerate(links, 1):
        expect(item, str, where=where, what=f'item {i} of field "python.find-links"')
    return PythonRequirements(tuple(requires), index_url, tuple(_link(x, base) for x in links))


def _requirement(item: str, i: int) -> Requirement:
    what = f'item {i} of field "python.requires"'
    try:
        req = Requirement(item)
    except InvalidRequirement as err:
        raise BundleError(
            f"{what} is {show(item)}, which is not a PEP 508 requirement "
            f"({str(err).splitlines()[0]})"
        ) from err
    if req.url:
        raise BundleError(
            f"{what} names a URL ({show(item)}); name a version and point find-links or "
            f"index-url at the wheels, so that no source is built"
        )
    if canonicalize_name(req.name) in RUNTIME_DISTRIBUTIONS:
        raise BundleError(
            f"{what} is {req.name}, which the host's runtime provides (the SDK, grpcio and "
            f"protobuf are never bundled); remove it"
        )
    return req


def _link(value: str, base: Path) -> str:
    if urlsplit(value).scheme in ("https", "http", "file"):
        return value
    return str(base / value)


def build_zipapp(script: bytes, python: PythonRequirements, *, plugin: str) -> bytes:
    """The zipapp of `script` (as `__main__.py`) and `python.requires`, installed by pip."""
    check_script(script, plugin)
    with tempfile.TemporaryDirectory(prefix=f"pm-bundle-{plugin}-") as work:
        folder = Path(work) / "target"
        folder.mkdir()
        if python.requires:
            run_pip(python, folder)
        files = check_installed(folder, plugin)
        return zip_bundle(script, folder, files)


def check_script(script: bytes, plugin: str) -> None:
    """Refuse an executable that is not a Python script: it becomes `__main__.py`."""
    first = script.split(b"\n", 1)[0]
    if not first.startswith(b"#!") or b"python" not in first:
        raise BundleError(
            f"the executable of {plugin} is not a Python script (its first line is not a #! "
            f"line naming python3), and only a Python plugin can carry [python] requires"
        )
    try:
        compile(script, f"{plugin}/__main__.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        raise BundleError(
            f"the executable of {plugin} is not valid Python ({err}), so it cannot be the "
            f"zipapp's __main__.py"
        ) from err


def pip_command(python: PythonRequirements, target: Path) -> list[str]:
    """pip, run by this interpreter, asked for pure-Python wheels only, into `target`."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    argv = [sys.executable, "-m", "pip", "install", "--isolated", "--target", str(target)]
    argv += ["--only-binary=:all:", "--platform=any", "--implementation=py", "--abi=none"]
    argv += [f"--python-version={version}", "--no-compile", "--disable-pip-version-check"]
    argv += ["--no-input", "--progress-bar=off", "--no-warn-script-location"]
    if python.index_url is not None:
        argv.append(f"--index-url={python.index_url}")
    elif python.find_links:
        argv.append("--no-index")
    argv += [f"--find-links={link}" for link in python.find_links]
    return [*argv, "--", *(str(r) for r in python.requires)]


def run_pip(python: PythonRequirements, target: Path) -> None:
    """Install `python.requires` into `target`, or refuse with pip's own words."""
    try:
        done = subprocess.run(
            pip_command(python, target),
            cwd=target.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PIP_TIMEOUT,
        )
    except subprocess.TimeoutExpired as err:
        raise BundleError(
            f"pip did not install [python] requires within {PIP_TIMEOUT:g} s"
        ) from err
    if done.returncode == 0:
        return
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    errors = [ln.removeprefix("ERROR: ") for ln in lines if ln.startswith("ERROR:")]
    missing = [e.removeprefix(_NO_MATCH) for e in errors if e.startswith(_NO_MATCH)]
    if missing:
        raise BundleError(
            f"pip found no pure-Python wheel (py3-none-any) of {show(missing[-1], 200)[1:-1]} "
            f"where [python] lets it look: {_WHY_PURE}, so a plugin carries no compiled wheel"
        )
    detail = "; ".join(errors or lines[-1:]) or f"exit code {done.returncode}"
    raise BundleError(
        f"pip could not install [python] requires as pure-Python wheels: "
        f"{show(detail, 400)[1:-1]} (a plugin carries only py3-none-any wheels: {_WHY_PURE})"
    )


@dataclass(frozen=True)
class _Dist:
    name: str
    version: str
    tags: tuple[str, ...]
    requires: frozenset[str]  # canonical names of the distributions it requires
    files: frozenset[str]  # the paths its RECORD lists, relative to the target folder


def _dists(folder: Path) -> list[_Dist]:
    found = []
    for info in sorted(folder.glob("*.dist-info")):
        dist = PathDistribution(info)
        wheel = dist.read_text("WHEEL") or ""
        tags = tuple(ln.split(":", 1)[1].strip() for ln in wheel.splitlines() if ln[:4] == "Tag:")
        needs = set()
        for line in dist.requires or ():
            with contextlib.suppress(InvalidRequirement):
                needs.add(canonicalize_name(Requirement(line).name))
        record = dist.read_text("RECORD") or ""
        files = {os.path.normpath(row[0]) for row in csv.reader(io.StringIO(record)) if row}
        name = str(dist.metadata["Name"] or info.name)
        found.append(_Dist(name, str(dist.version), tags, frozenset(needs), frozenset(files)))
    return found


def _required_by(dist: _Dist, dists: Iterable[_Dist]) -> str:
    parents = sorted(d.name for d in dists if canonicalize_name(dist.name) in d.requires)
    return f"required by {', '.join(parents)}" if parents else "named in [python] requires"


def check_installed(folder: Path, plugin: str) -> list[str]:
    """What pip put in `folder`, checked; returns the relative paths of the files to zip."""
    dists = _dists(folder)
    for dist in dists:
        what = f"{dist.name} {dist.version} ({_required_by(dist, dists)})"
        if canonicalize_name(dist.name) in RUNTIME_DISTRIBUTIONS:
            raise BundleError(
                f"{plugin} cannot carry {what}: the host's runtime provides it, and a bundled "
                f"copy would hide the runtime's"
            )
        if not dist.tags:
            raise BundleError(
                f"{plugin} cannot carry {what}: its WHEEL file names no tag, so nothing says "
                f"it is pure Python"
            )
        impure = [t for t in dist.tags if not _pure(t)]
        if impure:
            raise BundleError(
                f"{plugin} cannot carry {what}, a compiled wheel ({impure[0]}): {_WHY_PURE}, "
                f"so only pure-Python (py3-none-any) wheels are carried"
            )
    # console scripts: pip wrote the publisher's interpreter path in them; no use in a zip
    scripts = {p.removeprefix("../../") for d in dists for p in d.files if p[:10] == "../../bin/"}
    skip = {p for p in scripts if p.startswith("bin/") and ".." not in p.split("/")}
    files = [f for f in _walk(folder) if f not in skip]
    owners = {p: d.name for d in dists for p in d.files}
    for path in files:
        if path.endswith(EXTENSIONS) or ".so." in Path(path).name:
            owner = owners.get(path, "a dependency")
            raise BundleError(
                f"{plugin} cannot carry the compiled file {show(path, 80)} of {owner} (whatever "
                f"its wheel's tag says): {_WHY_PURE}"
            )
    _check_top_level(files, plugin, owners)
    return files


def _pure(tag: str) -> bool:
    try:
        expanded = parse_tag(tag)
    except ValueError:
        return False
    return all(
        t.interpreter.startswith("py") and t.abi == "none" and t.platform == "any" for t in expanded
    )


def _walk(folder: Path) -> list[str]:
    """Every regular file under `folder`, relative and sorted; anything else is refused."""
    files: list[str] = []
    total = 0
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted([*dirs, *names]):
            path = Path(root, name)
            rel = str(path.relative_to(folder))
            info = os.lstat(path)
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise BundleError(f"the installed requirements hold {show(rel, 80)}, {kind}")
            files.append(rel)
            total += info.st_size
            if len(files) > MAX_FILES or total > MAX_BYTES:
                raise BundleError(
                    f"the installed requirements are over the bound of {MAX_FILES} files or "
                    f"{MAX_BYTES} bytes that one plugin artifact may have"
                )
    return sorted(files)


def _importable(path: str) -> str | None:
    """The module a file makes importable from the zip's root, if it is one's source or
    package (a folder without `__init__` is only a namespace portion, and hides nothing)."""
    parts = path.split("/")
    if len(parts) == 1 and parts[0].endswith((".py", ".pyc")):
        return parts[0].rsplit(".", 1)[0]
    if parts[-1] in ("__init__.py", "__init__.pyc"):
        return ".".join(parts[:-1])
    return None


def _check_top_level(files: list[str], plugin: str, owners: dict[str, str]) -> None:
    for path in files:
        module = _importable(path)
        if module is None:
            continue
        owner = owners.get(path, "a dependency")
        if module.split(".")[0] == "__main__":
            raise BundleError(
                f"{owner} ships {show(path, 60)}, which would take the place of {plugin}'s "
                f"own __main__.py in the zipapp"
            )
        runtime = any(  # the module, a package above it (google), or one inside it
            module == r or r.startswith(module + ".") or module.startswith(r + ".")
            for r in RUNTIME_MODULES
        )
        if runtime or module in sys.stdlib_module_names:
            whose = "the one the host's runtime provides" if runtime else "Python's own"
            raise BundleError(
                f"{owner} ships the module {show(module, 60)}, which would hide {whose} "
                f"inside {plugin}'s zipapp"
            )


def zip_bundle(script: bytes, folder: Path, files: list[str]) -> bytes:
    """The zipapp's bytes: the `#!` line, then `__main__.py` and `files` in a fixed order."""
    out = io.BytesIO()
    out.write(f"#!{INTERPRETER}\n".encode())
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        _add(zf, "__main__.py", script)
        written: set[str] = set()
        for rel in files:
            parts = rel.split("/")
            for depth in range(1, len(parts)):  # folder entries: zipimport's namespace packages
                name = "/".join(parts[:depth]) + "/"
                if name not in written:
                    written.add(name)
                    _add(zf, name, b"")
            _add(zf, rel, _read(folder / rel))
    data = out.getvalue()
    if len(data) > MAX_BYTES:
        raise BundleError(f"the zipapp would be {len(data)} bytes, over the bound of {MAX_BYTES}")
    return data


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BundleError(
            f"the installed requirements hold a file name that is not UTF-8 ({err})"
        ) from err
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.create_system = 3  # unix, wherever it is built
    folder = name.endswith("/")
    info.external_attr = ((stat.S_IFDIR | 0o755) if folder else (stat.S_IFREG | 0o644)) << 16
    zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        return f.read()
