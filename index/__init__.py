"""For registry maintainers: build, sign and publish the TUF index of plugin releases.

Uses ``keys`` (ours), python-tuf, securesystemslib and cryptography only; no user-side
code lives here.

- :mod:`index.repository`: :class:`IndexRepo` (``init``/``open``, locking, loading and
  saving metadata), assembled from the mixins below; re-exports the plain data;
- :mod:`index.model`: the plain data (:class:`ReleaseInfo`, :class:`ExpiryPolicy`,
  :class:`RoleKeys`, :class:`AddedRelease`, :class:`Delegation`, :class:`PublishResult`);
- :mod:`index.roles`: role queries, ``delegate``, ``set_hash_bins`` and ``rotate``;
- :mod:`index.signing`: which keys sign a role, signing it, new root versions;
- :mod:`index.releases`: target lookups, blobs and ``add_releases``;
- :mod:`index.publishing`: ``publish``, ``timestamp`` and re-signing before expiry;
- :mod:`index.repo_base`: the helpers and the typed outline the mixins share;
- :mod:`index.paths`: target paths and role names shared with the client;
- :mod:`index.keyring`: the repository's encrypted keys as TUF keys and signers;
- :mod:`index.publish`: writing ``published/`` so readers never see half an index;
- :mod:`index.serve`: a loopback static HTTP server for the published folder;
- :mod:`index.push`: uploading the published folder to S3-compatible object storage in an
  order no reader notices (boto3, imported only when a push runs);
- :mod:`index.errors`: :class:`IndexRepoError`, the one-sentence refusal.
"""

from index.errors import IndexRepoError
from index.push import PushResult, S3Location, push
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
    "PushResult",
    "ReleaseInfo",
    "RoleKeys",
    "S3Location",
    "StaticServer",
    "make_server",
    "push",
]
