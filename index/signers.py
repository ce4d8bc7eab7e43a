"""How the index signs: signers from key URIs, our ``pmkey:`` key files, passphrases per role.

Why it exists: every signature the index makes goes through a securesystemslib
``Signer`` made from a private key URI (``Signer.from_priv_key_uri``), so a key held in
a KMS or an HSM (securesystemslib's ``gcpkms:``, ``awskms:``, ``azurekms:``, ``hsm:``, or
any scheme registered in ``SIGNER_FOR_URI_SCHEME``) replaces a key file by changing its
URI in ``keys/keys.json`` (:mod:`index.keystore`). Our own encrypted key files are the
``pmkey:PATH`` scheme registered here: read without following a symbolic link (a FIFO
or device is refused too), decrypted with the passphrase of the key's role, and checked
to hold exactly the public key the metadata names.

Passphrases are per role: ``PM_PLUGINS_<ROLE>_PASSPHRASE`` (ROOT, TARGETS, SNAPSHOT,
TIMESTAMP, or a delegated role's name upper-cased with ``-`` as ``_``), else
``PM_PLUGINS_KEY_PASSPHRASE``; the command line adds a prompt naming the role. Every
signature is checked against its signer's public key the moment it is made
(:func:`sign_checked`), so a misconfigured KMS or a swapped key never reaches a client.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.exceptions import UnverifiedSignatureError

# python-tuf and securesystemslib re-export these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import (  # type: ignore[attr-defined]
    SIGNER_FOR_URI_SCHEME,
    CryptoSigner,
    Key,
    SecretsHandler,
    Signature,
    Signer,
    SSlibKey,
)
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata  # type: ignore[attr-defined]

from index.errors import IndexRepoError
from keys import ed25519
from keys.errors import KeyFileError

__all__ = [
    "GENERIC_ENV",
    "KeyFileSigner",
    "Passphrases",
    "env_passphrases",
    "fixed_passphrase",
    "load_key_file",
    "missing_passphrase",
    "passphrase_env",
    "sign_checked",
]

GENERIC_ENV = ed25519.PASSPHRASE_ENV
_MAX_KEY_FILE = 64 * 1024


class Passphrases(Protocol):
    """Where the passphrase of a role's keys comes from: ``None`` when there is none.
    ``new`` is true when a key is about to be created (a prompt asks twice)."""

    def __call__(self, role: str, new: bool) -> bytes | None: ...


def passphrase_env(role: str) -> str:
    """``PM_PLUGINS_<ROLE>_PASSPHRASE`` for ``role`` (``publisher-acme`` ->
    ``PM_PLUGINS_PUBLISHER_ACME_PASSPHRASE``)."""
    return "PM_PLUGINS_" + re.sub(r"[^A-Z0-9]+", "_", role.upper()).strip("_") + "_PASSPHRASE"


def env_passphrases(environ: Mapping[str, str] | None = None) -> Passphrases:
    """The role's own variable, else ``PM_PLUGINS_KEY_PASSPHRASE`` (read when asked)."""

    def source(role: str, new: bool) -> bytes | None:
        env = os.environ if environ is None else environ
        value = env.get(passphrase_env(role)) or env.get(GENERIC_ENV)
        return value.encode("utf-8") if value else None

    return source


def fixed_passphrase(passphrase: bytes | None) -> Passphrases:
    """One passphrase for every role (what a repository used before roles had their own)."""

    def source(role: str, new: bool) -> bytes | None:
        return passphrase or None

    return source


def missing_passphrase(role: str) -> IndexRepoError:
    return IndexRepoError(
        f"the {role} keys are stored encrypted and no passphrase was given: set"
        f" {passphrase_env(role)} (or set {GENERIC_ENV} for every role)"
    )


def _read_key_file(path: Path) -> bytes:
    """The bytes of a key file that is a regular file reached without a symbolic link."""
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise KeyFileError(f"{path}: is a symbolic link; refusing to read a key through it")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot be read ({e.strerror or e})") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise KeyFileError(f"{path}: is not a regular file; refusing to read a key from it")
        data = os.read(fd, _MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{path}: is too large to be a key file")
    return data


def load_key_file(path: Path, passphrase: bytes) -> Ed25519PrivateKey:
    """The encrypted Ed25519 key at ``path`` (no symlink, regular file, bounded size)."""
    return ed25519.private_key_from_pem(_read_key_file(path), passphrase, source=str(path))


def _holds(private_key: Ed25519PrivateKey, public_key: Key) -> bool:
    raw = ed25519.raw_public_bytes(private_key.public_key()).hex()
    return public_key.keytype == "ed25519" and public_key.keyval.get("public") == raw


class KeyFileSigner(Signer):  # type: ignore[misc]
    """``pmkey:PATH``: one of our encrypted Ed25519 key files (the passphrase comes from the
    secrets handler, asked for ``"passphrase"``)."""

    SCHEME = "pmkey"

    def __init__(self, private_key: Ed25519PrivateKey, public_key: Key) -> None:
        if not _holds(private_key, public_key):
            raise IndexRepoError(
                f"the private key given for key {public_key.keyid[:16]} is another key"
            )
        assert isinstance(public_key, SSlibKey)  # _holds checked an ed25519 key
        self.private_key = private_key
        self._signer = CryptoSigner(private_key, public_key)

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> KeyFileSigner:
        scheme, _, location = priv_key_uri.partition(":")
        if scheme != cls.SCHEME or not location:
            raise ValueError(f"{priv_key_uri!r} is not a {cls.SCHEME}: URI")
        if secrets_handler is None:
            raise ValueError(f"{priv_key_uri} is encrypted: a passphrase is needed")
        passphrase = secrets_handler("passphrase").encode("utf-8")
        path = Path(location)
        key = load_key_file(path, passphrase)
        if not _holds(key, public_key):
            raise IndexRepoError(f"{path}: holds another key than its name says")
        return cls(key, public_key)

    @property
    def public_key(self) -> Key:
        return self._signer.public_key

    def sign(self, payload: bytes) -> Signature:
        return self._signer.sign(payload)


SIGNER_FOR_URI_SCHEME[KeyFileSigner.SCHEME] = KeyFileSigner


def sign_checked(md: Metadata[Any], signer: Signer) -> Signature:
    """Add ``signer``'s signature to ``md`` and check it against the signer's public key."""
    key = signer.public_key
    try:
        signature: Signature = md.sign(signer, append=True)
    except UnsignedMetadataError as e:
        cause = e.__cause__
        why = str(cause) if isinstance(cause, IndexRepoError | KeyFileError) else repr(cause)
        raise IndexRepoError(f"key {key.keyid[:16]} could not sign {md.signed.type}: {why}") from e
    try:
        key.verify_signature(signature, md.signed_bytes)
    except UnverifiedSignatureError as e:
        md.signatures.pop(signature.keyid, None)
        raise IndexRepoError(
            f"the signer of key {key.keyid[:16]} made a signature that does not verify with"
            " that key; check the key's URI in keys/keys.json"
        ) from e
    return signature
