"""`pm-plugins package DIR --key KEY`: turn a plugin's source directory into a signed package.

Why this exists: a publisher signs exactly one thing, the manifest, and the manifest pins the
artifact by SHA-256 and size. A package is a directory holding the artifact and
`manifest.dsse.json`; `install ./PATH` and `index add` take it as is. `plugin.toml` is
checked with the same field rules as every other file (`loader.fields`), and `executable`
must be a plain, visible file name in the source directory: the loader skips hidden files
when it looks for a release's artifact, so a `.plugin` would package, sign and publish, and
then never install.

The source directory has a `plugin.toml`:

    name = "hosts"
    version = "1.0.0"
    description = "..."
    publisher = "pm-plugins examples"
    types = ["resolver"]
    executable = "plugin"
    platform = "any"                  # optional, default "any"
    [requires]
    host = ["resolver"]               # host modules
    plugins = {allowlist = ">=1,<2"}  # other plugins, PEP 440 specifiers
    [capabilities]                    # optional: what it may do beyond its data folder
    read = ["/etc/hosts"]             # (see loader.capabilities; absent = the minimum)
    [python]                          # optional: the artifact becomes a zipapp carrying
    requires = ["tinydep>=1"]         # these pure-Python wheels (registry_client.bundle)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from keys import dsse
from keys._fs import write_atomic
from keys.errors import StrictJSONError
from loader.boot import MANIFEST_FILE, MAX_ARTIFACT_BYTES
from loader.capabilities import Capabilities, parse_capabilities
from loader.errors import LoaderError
from loader.fields import check_unknown, expect, optional, require, show
from loader.host_modules import CORE_MODULES
from loader.manifest import (
    Artifact,
    Manifest,
    ManifestError,
    Requires,
    format_created,
    manifest_to_bytes,
)
from loader.sealed import read_once
from loader.verify import MANIFEST_PAYLOAD_TYPE
from registry_client.bundle import BundleError, PythonRequirements, build_zipapp, parse_python

SOURCE_FILE = "plugin.toml"
_TOML_FIELDS = {
    "name",
    "version",
    "description",
    "publisher",
    "types",
    "executable",
    "platform",
    "requires",
    "capabilities",
    "python",
}


class PackageError(Exception):
    """A plugin directory cannot be packaged; one sentence naming the file and the field."""


@dataclass(frozen=True)
class PluginSource:
    """A plugin source directory: its `plugin.toml` and the executable's bytes."""

    directory: Path
    manifest: Manifest  # with the artifact's digest and size filled in
    executable: bytes


def read_source(
    directory: Path, *, created: datetime | None = None, host_module_name_ok: bool = False
) -> PluginSource:
    """Read and check `directory/plugin.toml` and its executable. A host module's name is
    refused (the installer would refuse it) unless `host_module_name_ok` (tests that play a
    hostile publisher, whose own tools would sign anything)."""
    toml_path = directory / SOURCE_FILE
    try:
        doc = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise PackageError(f"{directory} has no {SOURCE_FILE}; it is not a plugin") from err
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise PackageError(f"{toml_path}: cannot be read as TOML ({err})") from err
    with _refused():
        check_unknown(doc, _TOML_FIELDS, where=str(toml_path), what=SOURCE_FILE)
    executable_name = _executable(doc, toml_path)
    python = _python(doc, toml_path)
    try:
        data = read_once(directory / executable_name, MAX_ARTIFACT_BYTES)
    except LoaderError as err:
        raise PackageError(f"{toml_path}: {err}") from err
    try:
        manifest = Manifest(
            name=_str(doc, "name", toml_path),
            version=_str(doc, "version", toml_path),
            publisher=_str(doc, "publisher", toml_path),
            description=_str(doc, "description", toml_path),
            types=tuple(_list(doc, "types", toml_path)),
            requires=_requires(doc.get("requires", {}), toml_path),
            platform=_platform(doc, toml_path),
            artifact=Artifact(executable_name, hashlib.sha256(data).hexdigest(), len(data)),
            created=format_created(created or datetime.now(UTC)),
            capabilities=_capabilities(doc, toml_path),
        )
        manifest_to_bytes(manifest)  # the manifest's own checks, before anything is signed
    except (ManifestError, ValueError) as err:
        raise PackageError(f"{toml_path}: {err}") from err
    if manifest.name in CORE_MODULES and not host_module_name_ok:
        raise PackageError(
            f"{toml_path}: {manifest.name} is the name of a host module, which no plugin may "
            f"take (the installer refuses it); choose another name"
        )
    if python is not None:
        return _bundled(PluginSource(directory, manifest, data), python, toml_path)
    return PluginSource(directory, manifest, data)


def build_package(
    directory: Path,
    keys: Ed25519PrivateKey | Sequence[Ed25519PrivateKey],
    out_dir: Path,
    *,
    created: datetime | None = None,
    host_module_name_ok: bool = False,
) -> Path:
    """Write `out_dir/<name>-<version>/` with the artifact and its manifest signed by
    every key of `keys` (a host may require a threshold of distinct signers).

    The package directory appears complete or not at all (built aside, then renamed).
    """
    source = read_source(directory, created=created, host_module_name_ok=host_module_name_ok)
    manifest = source.manifest
    payload = manifest_to_bytes(manifest)
    signers = [keys] if isinstance(keys, Ed25519PrivateKey) else list(keys)
    envelope = dsse.envelope_to_bytes(dsse.sign(payload, MANIFEST_PAYLOAD_TYPE, signers))
    target = out_dir / f"{manifest.name}-{manifest.version}"
    if target.exists():
        raise PackageError(f"{target} already exists; remove it or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=out_dir))
    try:
        write_atomic(staging / manifest.artifact.filename, source.executable, 0o755)
        write_atomic(staging / MANIFEST_FILE, envelope, 0o644)
        os.chmod(staging, 0o755)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """A field rule's refusal (one sentence naming the file and the field) as a PackageError."""
    try:
        yield
    except StrictJSONError as err:
        raise PackageError(str(err)) from err


def _str(doc: dict[str, Any], key: str, path: Path) -> str:
    with _refused():
        return str(require(doc, key, str, where=str(path)))


def _executable(doc: dict[str, Any], path: Path) -> str:
    """The `executable` field: a file right in the source directory that the loader will
    find again once installed (not hidden, not in a subfolder)."""
    name = _str(doc, "executable", path)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise PackageError(
            f'{path}: field "executable" is {show(name)}, which is not a plain file name;'
            " put the executable beside plugin.toml"
        )
    if name.startswith("."):
        raise PackageError(
            f'{path}: field "executable" is {show(name)}, a hidden file name (it starts with'
            " '.'), which the loader never loads; rename the executable"
        )
    return name


def _platform(doc: dict[str, Any], path: Path) -> str:
    with _refused():
        return str(optional(doc, "platform", str, "any", where=str(path)))


def _python(doc: dict[str, Any], path: Path) -> PythonRequirements | None:
    if "python" not in doc:
        return None
    try:
        with _refused():
            return parse_python(doc["python"], where=str(path), base=path.parent)
    except BundleError as err:
        raise PackageError(f"{path}: {err}") from err


def _bundled(source: PluginSource, python: PythonRequirements, path: Path) -> PluginSource:
    """`source` with its executable made a zipapp carrying `python.requires`: the artifact
    the manifest pins (still under the executable's name) and the signature covers."""
    try:
        data = build_zipapp(source.executable, python, plugin=source.manifest.name)
    except BundleError as err:
        raise PackageError(f"{path}: {err}") from err
    name = source.manifest.artifact.filename
    artifact = Artifact(name, hashlib.sha256(data).hexdigest(), len(data))
    return replace(source, manifest=replace(source.manifest, artifact=artifact), executable=data)


def _list(doc: dict[str, Any], key: str, path: Path) -> list[str]:
    with _refused():
        value = require(doc, key, list, where=str(path))
        for i, item in enumerate(value, 1):
            expect(item, str, where=str(path), what=f'item {i} of field "{key}"')
    return list(value)


def _capabilities(doc: dict[str, Any], path: Path) -> Capabilities:
    if "capabilities" not in doc:
        return Capabilities()
    with _refused():
        return parse_capabilities(doc["capabilities"], where=str(path))


def _requires(value: Any, path: Path) -> Requires:
    where = str(path)
    with _refused():
        expect(value, dict, where=where, what="[requires]")
        check_unknown(value, ("host", "plugins"), where=where, what="[requires]")
        host = _list(value, "host", path) if "host" in value else []
        plugins = optional(value, "plugins", dict, {}, where=where)
        for name, spec in plugins.items():
            expect(spec, str, where=where, what=f'"requires.plugins.{name}"')
    try:
        specs = tuple((name, SpecifierSet(spec)) for name, spec in plugins.items())
    except InvalidSpecifier as err:
        raise PackageError(f'{path}: "requires.plugins" has a bad specifier ({err})') from err
    return Requires(host_modules=tuple(host), plugins=specs)
