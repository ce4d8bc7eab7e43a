"""The trust store: which publisher keys are trusted, at what level, and which are revoked.

What it is for: holding trust as plain data (:class:`TrustStore`) and reading/writing it.
``trusted_keys()`` is what :func:`keys.dsse.verify` takes: every trusted key that is not
revoked. A revoked key id stays revoked: trusting it again is refused, and revoking needs
no trusted entry (an id can be revoked before it is ever seen).

File format (UTF-8 JSON, read with :mod:`keys.strict_json`, written atomically, mode
0644)::

    {
      "version": 1,
      "keys": {
        "<key id: 64 lowercase hex>": {
          "publicKey": "<standard base64 of the raw 32-byte Ed25519 key>",
          "level": "official" | "community",
          "label": "<free text shown to the user>"
        }
      },
      "revoked": ["<key id>", ...]
    }

Each key id must equal :func:`keys.ed25519.key_id` of its ``publicKey``. Unknown fields
are refused. A missing file is an empty store.

What it leaves to others: where the file lives, who may edit it (the CLI), and what a
level allows (the loader and installer).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keys import strict_json
from keys._fs import write_atomic
from keys.ed25519 import key_id, public_key_from_text, public_key_to_text
from keys.errors import KeyFileError, StrictJSONError, TrustStoreError

__all__ = ["FORMAT_VERSION", "LEVELS", "Level", "TrustStore", "TrustedKey", "is_key_id"]

Level = Literal["official", "community"]
LEVELS: tuple[Level, ...] = ("official", "community")
FORMAT_VERSION = 1
_KEY_ID = re.compile(r"[0-9a-f]{64}")


def is_key_id(text: str) -> bool:
    """Whether ``text`` has the form of a key id (64 lowercase hex characters)."""
    return _KEY_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class TrustedKey:
    """One trusted publisher key."""

    key_id: str
    public_key: Ed25519PublicKey
    level: Level
    label: str


@dataclass
class TrustStore:
    """Trusted publisher keys by id, and the set of revoked key ids."""

    keys: dict[str, TrustedKey] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)

    # ---- queries -------------------------------------------------------------------

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every trusted key that is not revoked, by key id (what ``dsse.verify`` takes)."""
        return {kid: k.public_key for kid, k in self.keys.items() if kid not in self.revoked}

    def is_revoked(self, key_id: str) -> bool:
        return key_id in self.revoked

    def is_trusted(self, key_id: str) -> bool:
        """Trusted and not revoked."""
        return key_id in self.keys and key_id not in self.revoked

    def level_of(self, key_id: str) -> Level | None:
        """The level of a trusted, unrevoked key; ``None`` if unknown or revoked."""
        if not self.is_trusted(key_id):
            return None
        return self.keys[key_id].level

    # ---- changes -------------------------------------------------------------------

    def trust(self, public_key: Ed25519PublicKey, level: str, label: str) -> TrustedKey:
        """Trust ``public_key`` at ``level`` (replacing an earlier level or label).

        A revoked key or an unknown level is a :class:`TrustStoreError`.
        """
        kid = key_id(public_key)
        if kid in self.revoked:
            raise TrustStoreError(f"key {kid} is revoked and cannot be trusted again")
        if level not in LEVELS:
            raise TrustStoreError(
                f'trust level must be "official" or "community", not {json.dumps(level)}'
            )
        entry = TrustedKey(kid, public_key, level, label)
        self.keys[kid] = entry
        return entry

    def untrust(self, key_id: str) -> TrustedKey:
        """Stop trusting ``key_id`` (it is not revoked); an unknown id is an error."""
        try:
            return self.keys.pop(key_id)
        except KeyError:
            raise TrustStoreError(f"key {key_id} is not in the trust store") from None

    def revoke(self, key_id: str) -> None:
        """Revoke ``key_id`` for good, trusted or not. A malformed id is an error."""
        if not is_key_id(key_id):
            raise TrustStoreError(
                f"{json.dumps(key_id)} is not a key id (64 lowercase hex characters)"
            )
        self.revoked.add(key_id)

    # ---- files ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "keys": {
                kid: {
                    "publicKey": public_key_to_text(k.public_key),
                    "level": k.level,
                    "label": k.label,
                }
                for kid, k in sorted(self.keys.items())
            },
            "revoked": sorted(self.revoked),
        }

    def save(self, path: Path) -> None:
        """Write the store to ``path`` atomically, mode 0644."""
        data = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        try:
            write_atomic(Path(path), data.encode("utf-8"), 0o644)
        except OSError as e:
            raise TrustStoreError(f"{path}: cannot be written ({e.strerror or e})") from e

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        """Read the store from ``path``; a missing file is an empty store."""
        path = Path(path)
        if not path.exists():
            return cls()
        source = str(path)
        try:
            doc = strict_json.load(path, source=source)
            return cls.from_dict(doc, source=source)
        except StrictJSONError as e:
            raise TrustStoreError(e.message) from e

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "trust store") -> TrustStore:
        """Build a store from parsed JSON, checking every field exactly."""
        try:
            strict_json.expect(doc, dict, where=source, what="the trust store")
            _only(doc, {"version", "keys", "revoked"}, where=source)
            version = strict_json.require(doc, "version", int, where=source)
            if version != FORMAT_VERSION:
                raise TrustStoreError(
                    f"{source}: format version {version} is not supported"
                    f" (expected {FORMAT_VERSION})"
                )
            keys_doc = strict_json.optional(doc, "keys", dict, {}, where=source)
            revoked_doc = strict_json.optional(doc, "revoked", list, [], where=source)
            store = cls()
            for kid, entry in keys_doc.items():
                where = f"{source}: key {kid}"
                if not is_key_id(kid):
                    raise TrustStoreError(
                        f"{source}: {json.dumps(kid)} is not a key id (64 lowercase hex characters)"
                    )
                strict_json.expect(entry, dict, where=where, what="the entry")
                _only(entry, {"publicKey", "level", "label"}, where=where)
                text = strict_json.require(entry, "publicKey", str, where=where)
                level = strict_json.require(entry, "level", str, where=where)
                label = strict_json.optional(entry, "label", str, "", where=where)
                try:
                    pub = public_key_from_text(text, source=f'{where}: field "publicKey"')
                except KeyFileError as e:
                    raise TrustStoreError(e.message) from e
                if key_id(pub) != kid:
                    raise TrustStoreError(f"{where}: the key id does not match its public key")
                if level not in LEVELS:
                    raise TrustStoreError(
                        f'{where}: field "level" must be "official" or "community",'
                        f" not {json.dumps(level)}"
                    )
                store.keys[kid] = TrustedKey(kid, pub, cast(Level, level), label)
            for i, kid in enumerate(revoked_doc, start=1):
                strict_json.expect(kid, str, where=source, what=f"revoked entry {i}")
                if not is_key_id(kid):
                    raise TrustStoreError(
                        f"{source}: revoked entry {i} is not a key id (64 lowercase hex characters)"
                    )
                store.revoked.add(kid)
        except StrictJSONError as e:
            raise TrustStoreError(e.message) from e
        return store


def _only(obj: dict[str, Any], allowed: set[str], *, where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise TrustStoreError(f"{where}: unexpected field {json.dumps(extra[0])}")
