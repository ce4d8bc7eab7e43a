"""Our Ed25519 keys as TUF keys and signers.

Why it exists: TUF metadata names keys by a key id; we use the project's own id
(:func:`keys.ed25519.key_id`, the SHA-256 of the raw public key) so that an id in TUF
metadata, in a DSSE envelope and in the trust store is the same string. This module is
the one place that turns our keys into ``securesystemslib`` keys and signers.

Where a repository's private keys are, and their passphrases, is :mod:`index.keystore`;
signers from key URIs are :mod:`index.signers`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

# securesystemslib re-exports these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import CryptoSigner, Key, SSlibKey  # type: ignore[attr-defined]

from keys import ed25519

__all__ = ["public_key_of", "tuf_key", "tuf_signer"]


def tuf_key(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> SSlibKey:
    """The TUF key of ``public_key``, with our key id."""
    if isinstance(public_key, Ed25519PrivateKey):
        public_key = public_key.public_key()
    return SSlibKey.from_crypto(public_key, keyid=ed25519.key_id(public_key))


def public_key_of(key: Key) -> Ed25519PublicKey:
    """The Ed25519 public key a TUF key holds (the reverse of `tuf_key`).

    Raises:
        ValueError: it is not an Ed25519 key.
    """
    if key.keytype != "ed25519":
        raise ValueError(f"key {key.keyid} is a {key.keytype} key, not ed25519")
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.keyval["public"]))


def tuf_signer(private_key: Ed25519PrivateKey) -> CryptoSigner:
    """A TUF signer for ``private_key``; its signatures carry our key id."""
    return CryptoSigner(private_key, tuf_key(private_key))
