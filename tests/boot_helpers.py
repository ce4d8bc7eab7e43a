"""Building state roots for loader tests: real keys, real signed packages, real installs."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys import ed25519
from keys.store import TrustStore
from loader.home import Home
from registry_client.installer import install, read_package
from registry_client.package import build_package
from tests.conftest import EXAMPLES


@dataclass
class Publisher:
    key: Ed25519PrivateKey
    key_id: str


def new_publisher() -> Publisher:
    key = ed25519.generate()
    return Publisher(key, ed25519.key_id(key))


def trust(home: Home, *publishers: Publisher, level: str = "official") -> TrustStore:
    home.ensure()
    store = TrustStore.load(home.trust_store)
    for p in publishers:
        store.trust(p.key.public_key(), level, "test publisher")
    store.save(home.trust_store)
    return store


def write_source(
    root: Path,
    name: str,
    *,
    version: str = "1.0.0",
    types: tuple[str, ...] = ("decider",),
    host: tuple[str, ...] = ("firewall",),
    plugins: dict[str, str] | None = None,
    executable: Path | bytes = EXAMPLES / "allowlist" / "plugin",
    capabilities: str = "",
) -> Path:
    """A plugin source dir (plugin.toml + executable) under `root`; `capabilities` is the
    body of a `[capabilities]` table."""
    src = root / f"src-{name}-{version}"
    src.mkdir(parents=True)
    requires_plugins = ", ".join(f'{k} = "{v}"' for k, v in (plugins or {}).items())
    (src / "plugin.toml").write_text(
        f'name = "{name}"\nversion = "{version}"\ndescription = "test plugin {name}"\n'
        f'publisher = "tests"\ntypes = {json.dumps(list(types))}\nexecutable = "plugin"\n'
        f"[requires]\nhost = {json.dumps(list(host))}\nplugins = {{{requires_plugins}}}\n"
        + (f"[capabilities]\n{capabilities}\n" if capabilities else "")
    )
    target = src / "plugin"
    if isinstance(executable, bytes):
        target.write_bytes(executable)
    else:
        shutil.copyfile(executable, target)
    target.chmod(0o755)
    return src


def install_signed(home: Home, publisher: Publisher, src: Path, work: Path) -> Path:
    """Package `src` with `publisher`'s key and install it the way the CLI does.

    The publisher must be trusted at install time; returns the installed release dir."""
    package = build_package(src, publisher.key, work / "dist")
    release = read_package(package, trust=TrustStore.load(home.trust_store), dev_mode=False)
    return install(home, release).directory


def set_config(home: Home, name: str, **fields: Any) -> None:
    """Change fields of plugin `name`'s plugins.json entry."""
    entries = json.loads(home.plugins_json.read_text())
    for entry in entries:
        if entry["name"] == name:
            entry.update(fields)
    home.plugins_json.write_text(json.dumps(entries))
