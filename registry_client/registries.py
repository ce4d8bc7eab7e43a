"""The registries a user reads from: names, URLs, and where their trusted metadata lives.

Why this exists: a registry's trust anchor is bootstrapped once (`pm-plugins registry add
NAME URL --root root.json`) and every later command must find it again. `registries.json`
in the state root lists them in order (the first one that has a plugin is used); each
registry's verified TUF metadata is cached in `registries/<name>/`.

    {"version": 1, "registries": [{"name": "default", "url": "file:///.../published"}]}
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from keys import strict_json
from keys._fs import write_atomic
from keys.errors import StrictJSONError
from loader.fields import check_name, check_unknown
from loader.home import Home
from registry_client.tuf_client import RegistryClient, RegistryError

FORMAT_VERSION = 1
_MAX_URL = 2048


@dataclass(frozen=True)
class Registry:
    name: str
    url: str


def registries_file(home: Home) -> Path:
    return home.root / "registries.json"


def cache_dir(home: Home, name: str) -> Path:
    return home.root / "registries" / name


def read_registries(home: Home) -> list[Registry]:
    """The configured registries, in lookup order; none configured is []."""
    path = registries_file(home)
    if not path.exists():
        return []
    source = str(path)
    try:
        doc = strict_json.load(path, source=source)
        strict_json.expect(doc, dict, where=source, what="the document")
        check_unknown(doc, ("version", "registries"), where=source, what="the document")
        if strict_json.require(doc, "version", int, where=source) != FORMAT_VERSION:
            raise StrictJSONError(f"{source}: this format version is not supported")
        out: list[Registry] = []
        for i, item in enumerate(strict_json.require(doc, "registries", list, where=source), 1):
            where = f"{source}: registry {i}"
            strict_json.expect(item, dict, where=source, what=f"registry {i}")
            check_unknown(item, ("name", "url"), where=where, what="the entry")
            name = check_name(item.get("name"), where=where, what='field "name"')
            url = strict_json.require(item, "url", str, where=where)
            if not url or len(url) > _MAX_URL or not url.isprintable():
                raise StrictJSONError(f'{where}: field "url" is not a usable URL')
            if any(r.name == name for r in out):
                raise StrictJSONError(f"{where}: the name {name} is used twice")
            out.append(Registry(name, url))
    except StrictJSONError as err:
        raise RegistryError(str(err)) from err
    return out


def _write(home: Home, registries: list[Registry]) -> None:
    doc = {
        "version": FORMAT_VERSION,
        "registries": [{"name": r.name, "url": r.url} for r in registries],
    }
    home.ensure()
    write_atomic(registries_file(home), (json.dumps(doc, indent=2) + "\n").encode(), 0o644)


def add_registry(home: Home, name: str, url: str, root: bytes | Path) -> Registry:
    """Trust `root` for a new registry `name` at `url`; the root must be signed by its own
    keys and the URL must serve an index that verifies under it (TUF refresh), both checked
    before anything is saved."""
    try:
        check_name(name, where="registry add", what="the registry name")
    except StrictJSONError as err:
        raise RegistryError(str(err)) from err
    registries = read_registries(home)
    if any(r.name == name for r in registries):
        raise RegistryError(f"a registry named {name} is already configured; remove it first")
    if "://" not in url:  # a folder: remember where it is, not where we stood
        url = Path(url).expanduser().resolve().as_uri()
    cache = cache_dir(home, name)
    try:
        RegistryClient.bootstrap(name, url, cache, root).refresh()  # the URL serves it
    except RegistryError:
        shutil.rmtree(cache, ignore_errors=True)
        raise
    registry = Registry(name, url)
    _write(home, [*registries, registry])
    return registry


def remove_registry(home: Home, name: str) -> None:
    registries = read_registries(home)
    if all(r.name != name for r in registries):
        raise RegistryError(f"no registry named {name} is configured")
    _write(home, [r for r in registries if r.name != name])
    shutil.rmtree(cache_dir(home, name), ignore_errors=True)


def client(home: Home, registry: Registry) -> RegistryClient:
    return RegistryClient(registry.name, registry.url, cache_dir(home, registry.name))
