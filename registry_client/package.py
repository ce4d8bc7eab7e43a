"""`pm-plugins package DIR --key KEY`: turn a plugin's source directory into a signed package.

Why this exists: a publisher signs exactly one thing, the manifest, and the manifest pins the
artifact by SHA-256 and size. A package is a directory holding the artifact and
`manifest.dsse.json`; `install ./PATH` and `index add` take it as is.

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
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from keys import dsse
from keys._fs import write_atomic
from loader.boot import MANIFEST_FILE, MAX_ARTIFACT_BYTES
from loader.errors import LoaderError
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
}


class PackageError(Exception):
    """A plugin directory cannot be packaged; one sentence naming the file and the field."""


@dataclass(frozen=True)
class PluginSource:
    """A plugin source directory: its `plugin.toml` and the executable's bytes."""

    directory: Path
    manifest: Manifest  # with the artifact's digest and size filled in
    executable: bytes


def read_source(directory: Path, *, created: datetime | None = None) -> PluginSource:
    """Read and check `directory/plugin.toml` and its executable."""
    toml_path = directory / SOURCE_FILE
    try:
        doc = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise PackageError(f"{directory} has no {SOURCE_FILE}; it is not a plugin") from err
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise PackageError(f"{toml_path}: cannot be read as TOML ({err})") from err
    unknown = sorted(set(doc) - _TOML_FIELDS)
    if unknown:
        raise PackageError(f'{toml_path}: unknown field "{unknown[0]}"')
    executable_name = _str(doc, "executable", toml_path)
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
            platform=str(doc.get("platform", "any")),
            artifact=Artifact(executable_name, hashlib.sha256(data).hexdigest(), len(data)),
            created=format_created(created or datetime.now(UTC)),
        )
        manifest_to_bytes(manifest)  # the manifest's own checks, before anything is signed
    except (ManifestError, ValueError) as err:
        raise PackageError(f"{toml_path}: {err}") from err
    return PluginSource(directory, manifest, data)


def build_package(
    directory: Path,
    keys: Ed25519PrivateKey | Sequence[Ed25519PrivateKey],
    out_dir: Path,
    *,
    created: datetime | None = None,
) -> Path:
    """Write `out_dir/<name>-<version>/` with the artifact and its manifest signed by
    every key of `keys` (a host may require a threshold of distinct signers).

    The package directory appears complete or not at all (built aside, then renamed).
    """
    source = read_source(directory, created=created)
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


def _str(doc: dict[str, Any], key: str, path: Path) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise PackageError(f'{path}: field "{key}" must be a string')
    return value


def _list(doc: dict[str, Any], key: str, path: Path) -> list[str]:
    value = doc.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PackageError(f'{path}: field "{key}" must be a list of strings')
    return value


def _requires(value: Any, path: Path) -> Requires:
    if not isinstance(value, dict) or set(value) - {"host", "plugins"}:
        raise PackageError(f'{path}: [requires] may hold only "host" and "plugins"')
    host = _list(value, "host", path) if "host" in value else []
    plugins = value.get("plugins", {})
    if not isinstance(plugins, dict) or not all(isinstance(v, str) for v in plugins.values()):
        raise PackageError(f'{path}: "requires.plugins" must map plugin names to specifiers')
    try:
        specs = tuple((name, SpecifierSet(spec)) for name, spec in plugins.items())
    except InvalidSpecifier as err:
        raise PackageError(f'{path}: "requires.plugins" has a bad specifier ({err})') from err
    return Requires(host_modules=tuple(host), plugins=specs)
