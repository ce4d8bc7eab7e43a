"""The embedded default registry: the example plugins, published locally and signed.

Why this exists: `pm-plugins install hosts` must work on a fresh machine with no network
and no registry configured. On first use (no `registries.json`), this module:

1. generates a publisher key and signs a package of every plugin in `examples/plugins`;
2. creates a TUF index with fresh keys under `<home>/default-index/`, adds the packages
   and publishes it;
3. trusts the publisher key (level `community`, label "embedded examples") and adds the
   index as registry `default`, bootstrapped with the root it just signed.

It signs once and keeps no secret: the publisher key and the index keys live only in a
temporary folder while the index is built, the metadata is signed to expire in ten years
(the most the index allows), and only the published metadata and packages are kept, so
whoever can read the state root cannot sign a plugin with a key this host trusts. (A state
root made by an older version kept them in `default-index/`; they are deleted on first use.)
Everything is built in a temporary folder and moved into place last, so an interrupted
first run leaves nothing behind and is simply done again.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from index.intake import release_from_package
from index.model import ExpiryPolicy
from index.repository import IndexRepo
from keys import ed25519
from keys.store import TrustStore
from loader.home import Home
from loader.journal import state_lock
from registry_client.package import build_package
from registry_client.registries import add_registry, registries_file
from registry_client.tuf_client import RegistryError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "plugins"
REGISTRY_NAME = "default"
#: Signed once, never again: every role valid for the longest the index allows.
_SIGN_ONCE = ExpiryPolicy(root=3650, targets=3650, snapshot=3650, timestamp=3650)
PUBLISHER_LABEL = "embedded examples"


def default_index_dir(home: Home) -> Path:
    return home.root / "default-index"


def ensure_default_registry(
    home: Home, progress: Callable[[str], None], examples: Path = EXAMPLES
) -> bool:
    """Publish the embedded index and configure it, on a state root that has never had a
    registry (no `registries.json`; removing every registry does not bring it back).

    Returns True when it did the work. Runs under the state root's lock, so two first
    commands at once publish it once."""
    if registries_file(home).exists():
        _forget_secrets(home)
        return False
    with state_lock(home):
        if registries_file(home).exists():
            return False
        _publish_default(home, progress, examples)
        return True


#: What older versions kept in `default-index/`: keys that sign for a trusted publisher.
_SECRETS = ("publisher.key", "passphrase", "repo/keys")


def _forget_secrets(home: Home) -> None:
    for name in _SECRETS:
        path = default_index_dir(home) / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


def _publish_default(home: Home, progress: Callable[[str], None], examples: Path) -> None:
    final = default_index_dir(home)
    if final.exists():
        shutil.rmtree(final)  # a first run that did not finish
    if not examples.is_dir():
        raise RegistryError(
            f"no registry is configured and the embedded examples ({examples}) are not here; "
            f"add a registry with `pm-plugins registry add NAME URL --root root.json`"
        )
    sources = sorted(p for p in examples.iterdir() if (p / "plugin.toml").is_file())
    progress(f"no registry configured: publishing the {len(sources)} example plugins")
    work = Path(tempfile.mkdtemp(prefix=".default-index-", dir=home.root))
    try:
        publisher = ed25519.generate()
        packages = [build_package(src, publisher, work / "dist") for src in sources]
        repo_dir = work / "index"
        passphrase = secrets.token_urlsafe(32).encode()  # never written down
        with IndexRepo.init(repo_dir, passphrase=passphrase, expiry=_SIGN_ONCE) as repo:
            repo.add_publisher(publisher.public_key(), ["*"], label=PUBLISHER_LABEL)
            repo.add_releases([release_from_package(p, repo) for p in packages])
            repo.publish()
            root = repo.root_bytes()
            published_dir = repo.published_dir
        final.mkdir(mode=0o755)
        published_dir.rename(final / "published")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    published = final / "published"
    # the registry first: a crash between the two leaves an index whose publisher is not
    # trusted yet (installs say so), never a trusted key whose index is gone
    add_registry(home, REGISTRY_NAME, published.as_uri(), root)
    store = TrustStore.load(home.trust_store)
    store.trust(publisher.public_key(), "community", PUBLISHER_LABEL)
    store.save(home.trust_store)
    progress(
        f"registry {REGISTRY_NAME}: {published} (publisher key "
        f"{ed25519.key_id(publisher)[:12]}... trusted as community)"
    )
