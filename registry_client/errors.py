"""The errors the user's side refuses with: each carries one sentence for a person.

Why this exists: the command line (`cli.common.refusals`) and the dashboard both turn these
into a sentence on the screen, and anything else into a report of a bug of ours; naming them
once keeps the two from drifting apart.
"""

from __future__ import annotations

from keys.errors import KeysError
from loader.errors import LoaderError
from registry_client.package import PackageError
from registry_client.reading import InstallError
from registry_client.resolve import ResolutionError
from registry_client.tuf_client import RegistryError

__all__ = ["REFUSALS"]

#: Keys, the loader's formats and verification, packages, installs, resolving, registries.
REFUSALS: tuple[type[Exception], ...] = (
    KeysError,
    LoaderError,
    InstallError,
    PackageError,
    RegistryError,
    ResolutionError,
)
