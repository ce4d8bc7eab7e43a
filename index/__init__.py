"""For registry maintainers: build, sign and publish the TUF index of plugin releases.

Uses ``keys`` (ours), python-tuf, securesystemslib and cryptography only; no user-side
code lives here.

- :mod:`index.repository`: :class:`IndexRepo` (``init``/``open``, ``add_releases``,
  ``delegate``, ``set_hash_bins``, ``rotate``, ``publish``, ``timestamp``) and its plain
  data (:class:`ReleaseInfo`, :class:`ExpiryPolicy`, :class:`RoleKeys`, ...);
- :mod:`index.paths`: target paths and role names shared with the client;
- :mod:`index.keyring`: the repository's encrypted keys as TUF keys and signers;
- :mod:`index.publish`: writing ``published/`` so readers never see half an index;
- :mod:`index.serve`: a loopback static HTTP server for the published folder;
- :mod:`index.errors`: :class:`IndexRepoError`, the one-sentence refusal.
"""

from index.errors import IndexRepoError
from index.repository import (
    AddedRelease,
    Delegation,
    ExpiryPolicy,
    IndexRepo,
    PublishResult,
    ReleaseInfo,
    RoleKeys,
)
from index.serve import StaticServer, make_server

__all__ = [
    "AddedRelease",
    "Delegation",
    "ExpiryPolicy",
    "IndexRepo",
    "IndexRepoError",
    "PublishResult",
    "ReleaseInfo",
    "RoleKeys",
    "StaticServer",
    "make_server",
]
