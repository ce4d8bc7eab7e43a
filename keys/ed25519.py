"""Ed25519 signing keys: generate, name, save, load, export.

What it is for:

- :func:`generate` makes a new private key;
- :func:`key_id` names a public key: the lowercase hex SHA-256 of its raw 32 bytes
  (64 characters), the same id in envelopes, the trust store and ``plugins.lock``;
- private keys live on disk only as passphrase-encrypted PKCS#8 PEM
  (``BestAvailableEncryption``), mode 0600, written atomically (temp file in the same
  folder, fsync, ``os.replace``). An unencrypted key file is refused on load;
- public keys travel as text in one format: standard base64 (with padding) of the raw
  32-byte key, e.g. ``"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="``
  (:func:`public_key_to_text` / :func:`public_key_from_text`);
- :func:`passphrase_from_env` reads ``PM_PLUGINS_KEY_PASSPHRASE``.

What it leaves to others: prompting for a passphrase, where key files live, and what a
key is trusted for (``keys.store``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from keys._fs import write_atomic
from keys.errors import KeyFileError

__all__ = [
    "PASSPHRASE_ENV",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "PrivateKey",
    "PublicKey",
    "generate",
    "key_id",
    "load_private_key",
    "passphrase_from_env",
    "private_key_from_pem",
    "public_key_from_text",
    "public_key_to_text",
    "raw_public_bytes",
    "save_private_key",
]

PrivateKey = Ed25519PrivateKey
PublicKey = Ed25519PublicKey

PASSPHRASE_ENV = "PM_PLUGINS_KEY_PASSPHRASE"
_MAX_KEY_FILE_BYTES = 64 * 1024


def generate() -> Ed25519PrivateKey:
    """A new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of ``public_key``."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte public key (a private key gives its public
    key's id)."""
    if isinstance(public_key, Ed25519PrivateKey):
        public_key = public_key.public_key()
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()


def public_key_to_text(public_key: Ed25519PublicKey) -> str:
    """Standard base64 of the raw 32-byte key."""
    return base64.b64encode(raw_public_bytes(public_key)).decode("ascii")


def public_key_from_text(text: str, *, source: str = "public key") -> Ed25519PublicKey:
    """Parse :func:`public_key_to_text` output; junk in the base64 is refused, not trimmed.

    Raises :class:`KeyFileError` naming ``source``.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as e:
        raise KeyFileError(f"{source}: is not valid base64") from e
    if len(raw) != 32:
        raise KeyFileError(f"{source}: an Ed25519 public key is 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def passphrase_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The passphrase in ``PM_PLUGINS_KEY_PASSPHRASE`` as UTF-8 bytes, or ``None`` if the
    variable is unset or empty."""
    env = os.environ if environ is None else environ
    value = env.get(PASSPHRASE_ENV)
    if not value:
        return None
    return value.encode("utf-8")


def save_private_key(
    path: Path, key: Ed25519PrivateKey, passphrase: bytes, *, overwrite: bool = False
) -> None:
    """Write ``key`` to ``path`` as encrypted PKCS#8 PEM, mode 0600, atomically.

    An empty passphrase, an existing file (unless ``overwrite``) or a write failure is a
    :class:`KeyFileError`.
    """
    if not passphrase:
        raise KeyFileError(f"{path}: a private key needs a non-empty passphrase")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    path = Path(path)
    if not overwrite and path.exists():
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key file")
    try:
        write_atomic(path, pem, 0o600)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot be written ({e.strerror or e})") from e


def load_private_key(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    """Read an encrypted PKCS#8 PEM Ed25519 key from ``path``.

    A missing or unreadable file, a file that is not an encrypted Ed25519 key, a missing
    passphrase and a wrong passphrase are each a :class:`KeyFileError`.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot be read ({e.strerror or e})") from e
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: is too large to be a key file")
    return private_key_from_pem(data, passphrase, source=str(path))


def private_key_from_pem(
    data: bytes, passphrase: bytes | None, *, source: str
) -> Ed25519PrivateKey:
    """The Ed25519 key in ``data`` (encrypted PKCS#8 PEM, as :func:`load_private_key` reads
    it), for callers that read the file themselves; errors name ``source``."""
    path = source
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in data:
        if b"-----BEGIN PRIVATE KEY-----" in data:
            raise KeyFileError(f"{path}: the private key is not encrypted; refusing to use it")
        raise KeyFileError(f"{path}: is not an encrypted PKCS#8 PEM private key")
    if not passphrase:
        raise KeyFileError(
            f"{path}: the private key is encrypted and no passphrase was given"
            f" (set {PASSPHRASE_ENV})"
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except ValueError as e:
        # cryptography reports a wrong passphrase and a corrupt file alike.
        raise KeyFileError(f"{path}: the passphrase is wrong or the key file is damaged") from e
    except (TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{path}: is not a usable encrypted private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: holds a {type(key).__name__}, not an Ed25519 key")
    return key
