"""Where each private key of an index repository is, and a signer for it.

Why it exists: a real registry keeps its keys apart: one passphrase per role, root (and
possibly targets) keys offline on another machine, perhaps a key in a KMS or HSM later.
:class:`KeyStore` is the one place that knows, per key id, which role's passphrase
opens it and how to reach it; signing itself goes through the securesystemslib signer
its URI names (:mod:`index.signers`).

``keys/keys.json`` (the keys index, mode 0600) maps each key id to its role and either
a private key URI or the folder it was written to offline::

    {"format": 1, "keys": {
      "<key id>": {"role": "timestamp", "uri": "pmkey:<key id>.key"},
      "<key id>": {"role": "root", "offline": "/media/usb/root-keys"},
      "<key id>": {"role": "targets", "uri": "gcpkms:projects/p/locations/l/..."}}}

A relative ``pmkey:`` path is relative to ``keys/``; the key files themselves stay
``keys/<key id>.key`` (passphrase-encrypted PKCS#8, 0600). A repository made before
this index existed has no ``keys.json``: its ``keys/<key id>.key`` files are found by
name, and their role (for the passphrase) is the role that asked. Keys a rotation
replaced move to ``keys/retired/``. Keys made in this session stay in memory and sign
until the repository is closed (an offline root key signs the root it was made for).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# securesystemslib re-exports these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import SIGNER_FOR_URI_SCHEME, Key, Signer  # type: ignore[attr-defined]
from tuf.api.metadata import Root  # type: ignore[attr-defined]

from index import paths
from index.errors import IndexRepoError
from index.signers import (
    GENERIC_ENV,
    KeyFileSigner,
    Passphrases,
    missing_passphrase,
    passphrase_env,
)
from keys import ed25519, strict_json
from keys._fs import write_atomic
from keys.errors import KeyFileError, StrictJSONError

__all__ = ["KEYS_INDEX", "KeyPlace", "KeyStore"]

KEYS_INDEX = "keys.json"
FORMAT = 1
OFFLINE_ROLES = ("root", "targets")


@dataclass(frozen=True)
class KeyPlace:
    """Where one private key is: ``uri`` None means offline (or unknown here)."""

    key_id: str
    role: str | None
    uri: str | None
    offline: str | None = None
    legacy: bool = False

    @property
    def where(self) -> str:
        """``repo``, ``offline``, ``missing`` or ``uri <scheme>``."""
        if self.offline is not None:
            return "offline"
        if self.uri is None:
            return "missing"
        scheme = self.uri.partition(":")[0]
        return "repo" if scheme == KeyFileSigner.SCHEME else f"uri {scheme}"


class KeyStore:
    """The private keys of one repository (``<repo>/keys``), opened on first use."""

    def __init__(self, folder: Path, passphrases: Passphrases) -> None:
        self.folder = Path(folder)
        self._passphrases = passphrases
        self._given: dict[str, bytes] = {}
        self._loaded: dict[str, Ed25519PrivateKey] = {}
        self._signers: dict[str, Signer] = {}
        self._index: dict[str, dict[str, Any]] | None = None

    # -- passphrases ------------------------------------------------------------------------

    def passphrase(self, role: str, *, new: bool = False) -> bytes:
        """The passphrase of ``role``'s keys (asked once per role and command)."""
        if role not in self._given:
            value = self._passphrases(role, new)
            if not value:
                raise missing_passphrase(role)
            self._given[role] = value
        return self._given[role]

    # -- the keys index ---------------------------------------------------------------------

    def _entries(self) -> dict[str, dict[str, Any]]:
        if self._index is None:
            file = self.folder / KEYS_INDEX
            self._index = {}
            if file.is_file():
                self._index = _read_index(file)
        return self._index

    def _save(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"format": FORMAT, "keys": self._entries()}
        text = _dump(doc)
        try:
            write_atomic(self.folder / KEYS_INDEX, text, 0o600)
        except OSError as e:
            raise IndexRepoError(f"{self.folder / KEYS_INDEX}: cannot be written ({e})") from e

    def place(self, key_id: str, role: str | None = None) -> KeyPlace:
        """Where key ``key_id`` is; ``role`` names the role asking (for an old repository)."""
        entry = self._entries().get(key_id)
        if entry is not None:
            return KeyPlace(key_id, entry["role"], entry.get("uri"), entry.get("offline"))
        if os.path.lexists(self.folder / f"{key_id}.key"):
            return KeyPlace(key_id, role, f"{KeyFileSigner.SCHEME}:{key_id}.key", legacy=True)
        return KeyPlace(key_id, role, None)

    def set_uri(self, key_id: str, role: str, uri: str | None, offline: str | None = None) -> None:
        entry: dict[str, Any] = {"role": role}
        if uri is not None:
            entry["uri"] = uri
        if offline is not None:
            entry["offline"] = offline
        self._entries()[key_id] = entry
        self._signers.pop(key_id, None)
        self._save()

    # -- keys -------------------------------------------------------------------------------

    def create(self, role: str, folder: Path | None = None) -> Ed25519PrivateKey:
        """A new key for top-level ``role``, encrypted with that role's passphrase, in
        ``keys/`` or (offline) in ``folder``; recorded in the keys index."""
        if role not in paths.TOP_ROLES:
            raise ValueError(f"not a top-level role: {role}")
        if folder is not None and role not in OFFLINE_ROLES:
            raise IndexRepoError(
                f"{role} keys sign at every publish and must stay in the repository;"
                " only root and targets keys can be kept offline"
            )
        if folder is not None and Path(folder).resolve().is_relative_to(
            self.folder.parent.resolve()
        ):
            raise IndexRepoError(
                f"{folder} is inside the repository: offline keys belong elsewhere"
            )
        passphrase = self.passphrase(role, new=True)
        key = ed25519.generate()
        kid = ed25519.key_id(key)
        where = self.folder if folder is None else Path(folder)
        try:
            where.mkdir(mode=0o700, parents=True, exist_ok=True)
            ed25519.save_private_key(where / f"{kid}.key", key, passphrase)
        except KeyFileError as e:
            raise IndexRepoError(e.message) from e
        except OSError as e:
            raise IndexRepoError(f"{where}: cannot hold a key ({e.strerror or e})") from e
        if folder is None:
            self.set_uri(kid, role, f"{KeyFileSigner.SCHEME}:{kid}.key")
        else:
            self.set_uri(kid, role, None, offline=str(Path(folder).resolve()))
        self._loaded[kid] = key
        return key

    def _local_path(self, uri: str) -> Path:
        location = uri.partition(":")[2]
        path = Path(location)
        if ".." in path.parts or not location:
            raise IndexRepoError(f"key URI {uri!r} in {self.folder / KEYS_INDEX} is not allowed")
        if path.is_absolute():
            return path
        if self.folder.is_symlink():
            raise IndexRepoError(f"{self.folder}: is a symbolic link; refusing to read keys there")
        return self.folder / path

    def has(self, key_id: str) -> bool:
        """Whether ``key_id`` can sign here (made in this session, a file, or a URI)."""
        if key_id in self._loaded or key_id in self._signers:
            return True
        uri = self.place(key_id).uri
        if uri is None:
            return False
        if uri.partition(":")[0] == KeyFileSigner.SCHEME:
            return os.path.lexists(self._local_path(uri))
        return True

    def signer(self, key_id: str, public_key: Key, role: str | None = None) -> Signer:
        """The signer of ``key_id`` (whose public key is ``public_key``); ``role`` is the
        role asking, used for the passphrase of a key the keys index does not list."""
        if key_id in self._signers:
            return self._signers[key_id]
        if key_id in self._loaded:
            signer: Signer = KeyFileSigner(self._loaded[key_id], public_key)
        else:
            signer = self._open(self.place(key_id, role), public_key)
        self._signers[key_id] = signer
        return signer

    def _open(self, place: KeyPlace, public_key: Key) -> Signer:
        role = place.role or "index"
        short = place.key_id[:16]
        if place.uri is None:
            kept = f" (in {place.offline})" if place.offline else ""
            raise IndexRepoError(
                f"the {role} key {short} is kept offline{kept}; its signatures come back with"
                " pm-plugins index sign and index import-signatures"
            )
        uri, scheme = place.uri, place.uri.partition(":")[0]
        if scheme == KeyFileSigner.SCHEME:
            uri = f"{scheme}:{self._local_path(uri)}"

        def secrets(what: str) -> str:
            return self.passphrase(role).decode("utf-8")

        try:
            signer = Signer.from_priv_key_uri(uri, public_key, secrets)
        except IndexRepoError:
            raise
        except KeyFileError as e:
            raise IndexRepoError(
                f"{e.message} (the {role} passphrase: {passphrase_env(role)} or {GENERIC_ENV})"
            ) from e
        except Exception as e:
            raise IndexRepoError(
                f"the {role} key {short} cannot be used through its {scheme}: URI ({e})"
            ) from e
        if isinstance(signer, KeyFileSigner):
            self._loaded[place.key_id] = signer.private_key
        return signer

    def use_uri(self, root: Root, key_id: str, uri: str) -> str:
        """Sign with ``key_id`` (a root key id or a unique prefix of one) through ``uri``
        from now on (e.g. a key moved into a KMS or HSM); ``uri`` is tried first: its signer
        must sign and verify with the key ``root`` names. Returns the full key id."""
        found = [kid for kid in root.keys if kid.startswith(key_id)] if key_id else []
        if len(found) != 1:
            raise IndexRepoError(f"{key_id!r} names {len(found)} keys of the current root, not 1")
        kid = found[0]
        role = next((r for r in paths.TOP_ROLES if kid in root.roles[r].keyids), None)
        if role is None:
            raise IndexRepoError(f"key {kid[:16]} is in the root but signs none of its roles")
        scheme = uri.partition(":")[0]
        if scheme not in SIGNER_FOR_URI_SCHEME:
            known = ", ".join(sorted(SIGNER_FOR_URI_SCHEME))
            raise IndexRepoError(f"no signer is registered for {scheme}: URIs (known: {known})")
        signer = self._open(KeyPlace(kid, role, uri), root.keys[kid])
        probe = b"pm-plugins: does this signer hold the key?"
        try:
            root.keys[kid].verify_signature(signer.sign(probe), probe)
        except Exception as e:
            raise IndexRepoError(f"{uri} does not sign as the {role} key {kid[:16]} ({e})") from e
        self.set_uri(kid, role, uri)
        return kid

    def retire(self, key_id: str) -> None:
        """A key no role uses any more: its file moves to ``retired/`` (kept, never
        deleted) and it leaves the keys index."""
        place = self.place(key_id)
        if place.uri is not None and place.uri.partition(":")[0] == KeyFileSigner.SCHEME:
            path = self._local_path(place.uri)
            if path.is_file() and path.parent == self.folder:
                retired = self.folder / "retired"
                retired.mkdir(mode=0o700, exist_ok=True)
                os.replace(path, retired / path.name)
        self._loaded.pop(key_id, None)
        self._signers.pop(key_id, None)
        if self._entries().pop(key_id, None) is not None:
            self._save()


def _read_index(file: Path) -> dict[str, dict[str, Any]]:
    source = str(file)
    try:
        if stat.S_ISLNK(os.lstat(file).st_mode):
            raise IndexRepoError(f"{file}: is a symbolic link; refusing to read it")
        doc = strict_json.load(file, source=source)
        strict_json.expect(doc, dict, where=source, what="the keys index")
        fmt = strict_json.require(doc, "format", int, where=source)
        keys = strict_json.require(doc, "keys", dict, where=source)
        out: dict[str, dict[str, Any]] = {}
        for kid, entry in keys.items():
            where = f"{source}: key {kid[:16]}"
            strict_json.expect(entry, dict, where=where, what="the entry")
            strict_json.require(entry, "role", str, where=where)
            strict_json.optional(entry, "uri", str, None, where=where)
            strict_json.optional(entry, "offline", str, None, where=where)
            out[kid] = dict(entry)
    except StrictJSONError as e:
        raise IndexRepoError(e.message) from e
    if fmt != FORMAT:
        raise IndexRepoError(f"{source}: format {fmt} is not supported (expected {FORMAT})")
    return out


def _dump(doc: Any) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode("utf-8")
