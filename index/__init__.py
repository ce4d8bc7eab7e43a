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
- :mod:`index.publishers`: the publisher keys ``add`` accepts per plugin name, no host
  module's name, and the publisher roles ``publish`` refuses;
- :mod:`index.lifecycle`: ``yank``/``unyank`` and ``remove_release`` (before publishing);
- :mod:`index.gc`: deleting what no recent snapshot references, after a grace period;
- :mod:`index.publishing`: ``publish``, ``timestamp`` and re-signing before expiry;
- :mod:`index.repo_base`: the helpers and the typed outline the mixins share;
- :mod:`index.paths`: target paths and role names shared with the client;
- :mod:`index.keyring`: our Ed25519 keys as TUF keys and signers;
- :mod:`index.keystore`: where each key is (``keys/keys.json``: role, URI or offline folder);
- :mod:`index.signers`: signers from key URIs (``pmkey:`` files, a KMS or HSM), passphrases
  per role, every signature checked as it is made;
- :mod:`index.offline` and :mod:`index.staging`: roles whose keys are offline, staged,
  signed elsewhere (``index sign``) and their signatures imported and checked;
- :mod:`index.status`: each role's version, keys, threshold and expiry, with warnings;
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
