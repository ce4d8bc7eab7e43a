"""DSSE v1 envelopes signed with Ed25519: pre-authentication encoding, sign, verify.

What it is for: signing bytes and, on the other side, proving that enough distinct trusted
keys signed exactly those bytes. The envelope is the DSSE JSON form::

    {"payloadType": "<media type>",
     "payload": "<standard base64 of the payload>",
     "signatures": [{"keyid": "<keys.ed25519.key_id>", "sig": "<standard base64>"}]}

Every signature signs ``PAE(payloadType, payload)`` (see :func:`pae`). Reading is strict:
the JSON goes through :mod:`keys.strict_json`, the fields and their types are exact
(unknown fields are refused, ``keyid`` is required), and base64 is decoded with
validation, so junk is refused, not trimmed.

:func:`verify` returns a :class:`VerifiedPayload` holding the exact bytes that were
verified; callers parse *those* bytes and nothing else. The threshold counts distinct
trusted key ids whose signature verifies, never signature entries: two entries by one key
count once, entries by unknown keys are ignored.

What it leaves to others: which keys are trusted or revoked (``keys.store``), what the
payload means and how it is parsed (the loader and registry client).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from keys import strict_json
from keys.ed25519 import key_id
from keys.errors import SignatureError, StrictJSONError

__all__ = [
    "MAX_SIGNATURES",
    "Envelope",
    "Signature",
    "VerifiedPayload",
    "envelope_from_bytes",
    "envelope_to_bytes",
    "pae",
    "sign",
    "verify",
]

MAX_SIGNATURES = 32
_SIG_LEN = 64


@dataclass(frozen=True)
class Signature:
    """One decoded signature entry: the claimed key id and the raw signature bytes."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A decoded, well-formed but *unverified* envelope."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with standard base64."""
        return {
            "payloadType": self.payload_type,
            "payload": _b64(self.payload),
            "signatures": [{"keyid": s.keyid, "sig": _b64(s.sig)} for s in self.signatures],
        }


@dataclass(frozen=True)
class VerifiedPayload:
    """The result of :func:`verify`: the exact verified bytes and who signed them.

    ``key_ids`` are the distinct trusted key ids whose signature verified, in envelope
    order; there are at least ``threshold`` of them.
    """

    payload: bytes
    payload_type: str
    key_ids: tuple[str, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding:
    ``"DSSEv1" SP len(type) SP type SP len(body) SP body``, lengths in ASCII decimal
    (``len(type)`` counts the UTF-8 bytes)."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sign(payload: bytes, payload_type: str, keys: Sequence[Ed25519PrivateKey]) -> dict[str, Any]:
    """Sign ``payload`` with each distinct key; return the envelope as a JSON-ready dict."""
    if not keys:
        raise ValueError("sign() needs at least one key")
    message = pae(payload_type, payload)
    signatures: list[Signature] = []
    seen: set[str] = set()
    for key in keys:
        kid = key_id(key)
        if kid in seen:
            continue
        seen.add(kid)
        signatures.append(Signature(kid, key.sign(message)))
    return Envelope(payload_type, bytes(payload), tuple(signatures)).to_dict()


def envelope_to_bytes(envelope: Mapping[str, Any] | Envelope) -> bytes:
    """Serialise an envelope (as returned by :func:`sign`, or an :class:`Envelope`)."""
    data = envelope.to_dict() if isinstance(envelope, Envelope) else dict(envelope)
    return (json.dumps(data, indent=2, ensure_ascii=True, allow_nan=False) + "\n").encode()


def _decode_b64(text: str, *, where: str, field: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as e:
        raise SignatureError(f'{where}: field "{field}" is not valid base64') from e


def _exact_fields(obj: dict[str, Any], allowed: set[str], *, where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise SignatureError(f'{where}: unexpected field "{extra[0]}"')


def envelope_from_bytes(
    data: bytes, *, source: str = "envelope", max_bytes: int = strict_json.DEFAULT_MAX_BYTES
) -> Envelope:
    """Parse a DSSE envelope strictly; every problem is one :class:`SignatureError`."""
    try:
        doc = strict_json.loads(data, source=source, max_bytes=max_bytes)
        strict_json.expect(doc, dict, where=source, what="the envelope")
        _exact_fields(doc, {"payloadType", "payload", "signatures"}, where=source)
        payload_type = strict_json.require(doc, "payloadType", str, where=source)
        payload_text = strict_json.require(doc, "payload", str, where=source)
        entries = strict_json.require(doc, "signatures", list, where=source)
    except StrictJSONError as e:
        raise SignatureError(e.message) from e
    payload = _decode_b64(payload_text, where=source, field="payload")
    if not entries:
        raise SignatureError(f"{source}: has no signatures")
    if len(entries) > MAX_SIGNATURES:
        raise SignatureError(f"{source}: has more than {MAX_SIGNATURES} signatures")
    signatures: list[Signature] = []
    for i, entry in enumerate(entries, start=1):
        where = f"{source}: signature {i}"
        try:
            strict_json.expect(entry, dict, where=where, what="the entry")
            _exact_fields(entry, {"keyid", "sig"}, where=where)
            kid = strict_json.require(entry, "keyid", str, where=where)
            sig_text = strict_json.require(entry, "sig", str, where=where)
        except StrictJSONError as e:
            raise SignatureError(e.message) from e
        sig = _decode_b64(sig_text, where=where, field="sig")
        if len(sig) != _SIG_LEN:
            raise SignatureError(
                f"{where}: an Ed25519 signature is {_SIG_LEN} bytes, not {len(sig)}"
            )
        signatures.append(Signature(kid, sig))
    return Envelope(payload_type, payload, tuple(signatures))


def verify(
    envelope_bytes: bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    threshold: int = 1,
    *,
    payload_type: str,
    source: str = "envelope",
) -> VerifiedPayload:
    """Verify that at least ``threshold`` distinct keys in ``trusted`` signed the payload.

    ``trusted`` maps key id to public key and must already exclude revoked keys (see
    ``TrustStore.trusted_keys()``). A malformed envelope, a wrong ``payloadType`` or too
    few valid signatures is a :class:`SignatureError`; a ``threshold`` below 1 or a
    ``trusted`` entry whose id does not match its key is the caller's ``ValueError``.
    """
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    for kid, pub in trusted.items():
        if key_id(pub) != kid:
            raise ValueError(f"trusted key id {kid} does not match its public key")
    envelope = envelope_from_bytes(envelope_bytes, source=source)
    if envelope.payload_type != payload_type:
        raise SignatureError(
            f'{source}: the payload type is "{envelope.payload_type}", expected "{payload_type}"'
        )
    message = pae(envelope.payload_type, envelope.payload)
    valid: list[str] = []
    failed: set[str] = set()
    unknown = 0
    for entry in envelope.signatures:
        signer = trusted.get(entry.keyid)
        if signer is None:
            unknown += 1
            continue
        if entry.keyid in valid:
            continue
        try:
            signer.verify(entry.sig, message)
        except InvalidSignature:
            failed.add(entry.keyid)
            continue
        valid.append(entry.keyid)
    if len(valid) < threshold:
        bad = len(failed - set(valid))
        details = []
        if bad:
            details.append(f"{bad} by a trusted key did not verify")
        if unknown:
            details.append(f"{unknown} by an unknown or revoked key")
        detail = f" ({'; '.join(details)})" if details else ""
        raise SignatureError(
            f"{source}: {len(valid)} valid signature(s) by distinct trusted keys,"
            f" {threshold} needed{detail}"
        )
    return VerifiedPayload(envelope.payload, envelope.payload_type, tuple(valid))
