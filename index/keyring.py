"""The private keys of an index repository, and our Ed25519 keys as TUF keys and signers.

Why it exists: TUF metadata names keys by a key id; we use the project's own id
(:func:`keys.ed25519.key_id`, the SHA-256 of the raw public key) so that an id in TUF
metadata, in a DSSE envelope and in the trust store is the same string. This module is
the one place that turns our keys into ``securesystemslib`` keys and signers.

Key files live in ``<repo>/keys/<key id>.key`` as passphrase-encrypted PKCS#8 (mode
0600, see :mod:`keys.ed25519`); which role a key signs for is recorded only in the root
metadata. Keys that a rotation replaced move to ``<repo>/keys/retired/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

# securesystemslib re-exports these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import CryptoSigner, Key, SSlibKey  # type: ignore[attr-defined]

from index.errors import IndexRepoError
from keys import ed25519
from keys.errors import KeyFileError

__all__ = ["KeyRing", "public_key_of", "tuf_key", "tuf_signer"]


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


class KeyRing:
    """The encrypted private keys in one folder, loaded on first use."""

    def __init__(self, folder: Path, passphrase: bytes | None) -> None:
        self.folder = Path(folder)
        self._passphrase = passphrase
        self._loaded: dict[str, Ed25519PrivateKey] = {}

    def _file(self, key_id: str) -> Path:
        return self.folder / f"{key_id}.key"

    def _need_passphrase(self) -> bytes:
        if not self._passphrase:
            raise IndexRepoError(
                f"the index keys in {self.folder} are encrypted and no passphrase was given"
                f" (set {ed25519.PASSPHRASE_ENV})"
            )
        return self._passphrase

    def create(self) -> Ed25519PrivateKey:
        """Generate a key and save it encrypted; returns it."""
        passphrase = self._need_passphrase()
        key = ed25519.generate()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            ed25519.save_private_key(self._file(ed25519.key_id(key)), key, passphrase)
        except KeyFileError as e:
            raise IndexRepoError(e.message) from e
        self._loaded[ed25519.key_id(key)] = key
        return key

    def has(self, key_id: str) -> bool:
        return key_id in self._loaded or self._file(key_id).is_file()

    def private_key(self, key_id: str) -> Ed25519PrivateKey:
        key = self._loaded.get(key_id)
        if key is None:
            path = self._file(key_id)
            if not path.is_file():
                raise IndexRepoError(f"the private key {key_id} is not in {self.folder}")
            try:
                key = ed25519.load_private_key(path, self._need_passphrase())
            except KeyFileError as e:
                raise IndexRepoError(e.message) from e
            if ed25519.key_id(key) != key_id:
                raise IndexRepoError(f"{path}: holds another key than its name says")
            self._loaded[key_id] = key
        return key

    def signer(self, key_id: str) -> CryptoSigner:
        return tuf_signer(self.private_key(key_id))

    def retire(self, key_id: str) -> None:
        """Move a key no role uses any more to ``retired/`` (kept, never deleted)."""
        path = self._file(key_id)
        if path.is_file():
            retired = self.folder / "retired"
            retired.mkdir(mode=0o700, exist_ok=True)
            os.replace(path, retired / path.name)
        self._loaded.pop(key_id, None)
