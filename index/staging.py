"""Metadata that waits for offline signatures: reading and writing such files, signing one
on another machine, and checking the signatures that come back.

Why it exists: root (and possibly targets) keys of a real registry live offline. A
change that needs them is written as a plain TUF metadata file (``staged/<role>.json``
in the repository); it travels to the machine with the keys, is signed there by
:func:`sign_file` (no repository needed: the file and one key file), and comes back.
Before the repository takes a signature from such a file, :func:`pick_staged` makes sure
the file signs exactly the staged bytes (not an older version, not other content) and
:func:`new_signatures` that each signature is by a key of the role and verifies. Both
refuse with one sentence; nothing here writes to a repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.exceptions import UnverifiedSignatureError

# python-tuf and securesystemslib re-export these names without __all__ (mypy strict: ignore).
from securesystemslib.signer import Key, Signature  # type: ignore[attr-defined]
from tuf.api.metadata import Metadata, Root, Targets  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError

from index.errors import IndexRepoError
from index.keyring import tuf_key
from index.signers import KeyFileSigner, sign_checked
from keys import strict_json
from keys._fs import write_atomic
from keys.errors import StrictJSONError

__all__ = [
    "describe",
    "new_signatures",
    "pick_staged",
    "read_metadata",
    "same_but_version_and_expiry",
    "sign_file",
    "write_metadata",
]

MAX_METADATA = 64 * 1024 * 1024


def read_metadata(path: Path) -> Metadata[Any]:
    """The TUF metadata in ``path`` (a regular file of at most 64 MiB)."""
    try:
        data = strict_json.read_regular(path, MAX_METADATA, source=str(path))
    except FileNotFoundError:
        raise IndexRepoError(f"{path}: no such file") from None
    except (StrictJSONError, OSError) as e:
        raise IndexRepoError(f"{path}: cannot be read ({e})") from e
    if len(data) > MAX_METADATA:
        raise IndexRepoError(f"{path}: is too large to be TUF metadata")
    try:
        return Metadata.from_bytes(data)
    except DeserializationError as e:
        raise IndexRepoError(f"{path}: is not TUF metadata") from e


def write_metadata(path: Path, md: Metadata[Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, md.to_bytes(), 0o644)
    except OSError as e:
        raise IndexRepoError(f"{path}: cannot be written ({e.strerror or e})") from e


def sign_file(path: Path, private_key: Ed25519PrivateKey) -> Metadata[Any]:
    """Add ``private_key``'s signature to the metadata in ``path`` (in place)."""
    md = read_metadata(path)
    sign_checked(md, KeyFileSigner(private_key, tuf_key(private_key)))
    write_metadata(path, md)
    return md


def describe(md: Metadata[Any]) -> list[str]:
    """What a signer is about to sign, in a few lines (roles, keys and thresholds)."""
    signed = md.signed
    lines = [f"{signed.type} v{signed.version}, expires {signed.expires:%Y-%m-%d %H:%M} UTC"]
    if isinstance(signed, Root):
        for name, role in signed.roles.items():
            ids = ", ".join(kid[:16] for kid in role.keyids)
            lines.append(f"  {name}: {role.threshold} of {len(role.keyids)} keys ({ids})")
    elif isinstance(signed, Targets):
        lines.append(f"  {len(signed.targets)} target(s)")
        delegations = signed.delegations
        if delegations is not None and delegations.roles:
            lines.append(f"  delegates to {', '.join(delegations.roles)}")
        if delegations is not None and delegations.succinct_roles is not None:
            lines.append(f"  delegates to {delegations.succinct_roles.number_of_bins} hash bins")
    signers = ", ".join(kid[:16] for kid in md.signatures) or "nobody yet"
    lines.append(f"  signed by: {signers}")
    return lines


def same_but_version_and_expiry(stored: Metadata[Any], staged: Metadata[Any]) -> bool:
    """Whether ``staged`` is ``stored`` with at most its version and expiry changed."""
    candidate = Metadata.from_bytes(stored.to_bytes())
    candidate.signed.version = staged.signed.version
    candidate.signed.expires = staged.signed.expires
    same: bool = candidate.signed_bytes == staged.signed_bytes
    return same


def pick_staged(file: Path, incoming: Metadata[Any], staged: Mapping[str, Metadata[Any]]) -> str:
    """The staged role whose signed bytes ``incoming`` carries, exactly; else one sentence
    saying why the file cannot be used."""
    data = incoming.signed_bytes
    for role, md in staged.items():
        if md.signed_bytes == data:
            return role
    kind = incoming.signed.type
    candidates = [(r, md) for r, md in staged.items() if md.signed.type == kind]
    if not candidates:
        raise IndexRepoError(
            f"{file} holds {kind} metadata, but no {kind} metadata waits for signatures here"
        )
    if len(candidates) > 1:
        names = ", ".join(r for r, _ in candidates)
        raise IndexRepoError(f"{file} signs none of the staged {kind} roles ({names})")
    role, md = candidates[0]
    if md.signed.version != incoming.signed.version:
        raise IndexRepoError(
            f"{file} signs {role} v{incoming.signed.version}, but the staged {role} is"
            f" v{md.signed.version}; a signature over another version cannot be used"
        )
    raise IndexRepoError(
        f"{file} signs other content than the staged {role} v{md.signed.version}"
        " (changed after it was exported, or staged again since); refusing its signatures"
    )


def new_signatures(
    file: Path,
    incoming: Metadata[Any],
    staged: Metadata[Any],
    role: str,
    allowed: Mapping[str, Key],
) -> dict[str, Signature]:
    """The signatures of ``incoming`` that ``staged`` does not have yet, each by a key in
    ``allowed`` and valid over the staged bytes; any other is a refusal."""
    out: dict[str, Signature] = {}
    version = staged.signed.version
    for kid, sig in incoming.signatures.items():
        have = staged.signatures.get(kid)
        if have is not None and have.signature == sig.signature:
            continue
        key = allowed.get(kid)
        if key is None:
            raise IndexRepoError(
                f"{file} carries a signature by key {kid[:16]}, which is not a key that signs"
                f" {role} v{version}; refusing it"
            )
        try:
            key.verify_signature(sig, staged.signed_bytes)
        except UnverifiedSignatureError as e:
            raise IndexRepoError(
                f"the signature by key {kid[:16]} in {file} does not verify over the staged"
                f" {role} v{version}; refusing it"
            ) from e
        out[kid] = sig
    return out
