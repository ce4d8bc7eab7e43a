"""The loader's verification of one installed plugin, as a pure function.

`verify_plugin` takes bytes (the DSSE envelope of the signed manifest, or None when there is
none, and the artifact) plus the trust store, and returns a `Verdict` that explains itself.
It reads no file and opens no socket, so the trust table of DESIGN.md is one parametrized
test. The order is fixed: verify the signed bytes first (against trusted, unrevoked keys),
parse the manifest from exactly those bytes, check it names this plugin, then compare the
artifact's size and SHA-256.

A payload whose signature verifies but which is not a valid manifest is ``malformed-manifest``,
not ``invalid-signature``: the publisher signed bad bytes, and the user should hear that rather
than suspect a forgery. A ``created`` time more than a day ahead of this machine's clock is
refused the same way (:func:`loader.manifest.check_created`); the clock is read here, once per
call, and ``now`` makes it a parameter for tests. Refusals about the manifest name the plugin,
the file and the field: ``plugin hosts: manifest.dsse.json: field "artifact.size" ...``.

| plugin state                                                    | normal  | dev mode |
|-----------------------------------------------------------------|---------|----------|
| signed by a trusted, unrevoked key, bytes match                 | runs    | runs     |
| unsigned (no manifest)                                          | refused | runs     |
| bad signature, untrusted/revoked key, modified, other's manifest | refused | refused  |
| signed, but the payload is not a valid manifest (or from the future) | refused | refused |
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from keys.dsse import Envelope, envelope_from_bytes, verify
from keys.errors import SignatureError
from keys.store import TrustStore
from loader.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    check_created,
    parse_manifest,
)

#: The DSSE payload type of a signed plugin manifest.
MANIFEST_PAYLOAD_TYPE = "application/vnd.pm-plugins.manifest+json"


class Status(enum.StrEnum):
    """A verdict's one reason; the values are what `verify --json` and `status` print."""

    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    INVALID_SIGNATURE = "invalid-signature"
    UNTRUSTED_KEY = "untrusted-key"
    REVOKED_KEY = "revoked-key"
    MODIFIED = "modified"
    MALFORMED_MANIFEST = "malformed-manifest"  # signature good, signed payload not a manifest


@dataclass(frozen=True)
class Verdict:
    """Whether a plugin may run, and why."""

    status: Status
    reason: str
    runs: bool
    key_id: str | None = None  # the first trusted signer
    trust_level: str | None = None
    manifest: Manifest | None = None
    key_ids: tuple[str, ...] = ()  # every distinct trusted key whose signature verified

    @property
    def unsigned(self) -> bool:
        return self.status is Status.UNSIGNED


def _refused(status: Status, reason: str, key_id: str | None = None) -> Verdict:
    return Verdict(status, reason, runs=False, key_id=key_id)


def _why_not_verified(
    label: str, envelope: Envelope, trust: TrustStore, err: SignatureError, threshold: int
) -> Verdict:
    """Name the key problem when there is one; otherwise the signature is bad."""
    key_ids = [s.keyid for s in envelope.signatures]
    revoked = [k for k in key_ids if trust.is_revoked(k)]
    if revoked:
        return _refused(
            Status.REVOKED_KEY,
            f"{label} is signed by key {revoked[0][:12]}..., which is revoked",
            revoked[0],
        )
    unknown = [k for k in key_ids if not trust.is_trusted(k)]
    if unknown and len(unknown) == len(key_ids):
        return _refused(
            Status.UNTRUSTED_KEY,
            f"{label} is signed by key {unknown[0][:12]}..., which is not in your trust "
            f"store; run `pm-plugins keys trust` with that publisher's key if you trust it",
            unknown[0],
        )
    trusted = sorted({k for k in key_ids if trust.is_trusted(k)})
    if threshold > 1 and len(trusted) < threshold:
        others = sorted({k[:12] + "..." for k in unknown})
        by = f"; it is also signed by {', '.join(others)}, not trusted" if others else ""
        return _refused(
            Status.INVALID_SIGNATURE,
            f"{label} is signed by {len(trusted)} trusted key(s) and this host requires "
            f"{threshold} (signatureThreshold in host.json){by}: trust another signer with "
            f"`pm-plugins keys trust`, or lower the threshold",
            trusted[0] if trusted else None,
        )
    return _refused(Status.INVALID_SIGNATURE, str(err))  # err names the manifest


class _Refused(Exception):
    """Internal: one step of `verify_plugin` refused; carries the verdict to return."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


def verify_plugin(
    *,
    name: str | None,
    envelope: bytes | None,
    artifact: bytes,
    trust: TrustStore,
    dev_mode: bool,
    version: str | None = None,
    platform: str | None = None,
    threshold: int = 1,
    now: datetime | None = None,
) -> Verdict:
    """Decide whether plugin `name` (optionally at `version`, for `platform`) may run.

    `name=None` checks a package whose name is not known yet (an install from a path): the
    verified manifest then names the plugin, and the messages say "the package". `now`
    (aware; default: this machine's clock) is the time a manifest's `created` is checked at.
    """
    label = f"plugin {name}" if name is not None else "the package"
    where = f"{label}: {MANIFEST_FILE}" if name is not None else MANIFEST_FILE
    if envelope is None:
        return _unsigned(label, dev_mode)
    try:
        # 1. the signed bytes, against trusted and unrevoked keys
        key_ids, payload = _verified_signers(label, where, envelope, trust, threshold)
        key_id = key_ids[0]
        # 2. the manifest, parsed from exactly the verified bytes, and not from the future
        clock = now if now is not None else datetime.now(UTC)
        manifest = _signed_manifest(where, payload, key_id, clock)
        # 3. it must be this plugin's manifest
        name = _check_identity(manifest, name, version, platform, key_id)
        # 4. the artifact bytes
        _check_artifact(manifest, name, artifact, key_id)
    except _Refused as refusal:
        return refusal.verdict
    return Verdict(
        Status.VERIFIED,
        f"plugin {name} {manifest.version} is signed by key {key_id[:12]}...",
        runs=True,
        key_id=key_id,
        trust_level=trust.level_of(key_id),
        manifest=manifest,
        key_ids=tuple(key_ids),
    )


def _unsigned(label: str, dev_mode: bool) -> Verdict:
    if dev_mode:
        return Verdict(
            Status.UNSIGNED,
            f"{label} is unsigned and runs only because dev mode is on",
            runs=True,
        )
    return _refused(
        Status.UNSIGNED,
        f"{label} is unsigned (no signed manifest); only dev mode runs unsigned plugins",
    )


def _verified_signers(
    label: str, where: str, envelope: bytes, trust: TrustStore, threshold: int
) -> tuple[list[str], bytes]:
    """The distinct trusted key ids that verified `envelope`, and the payload they signed."""
    try:
        parsed = envelope_from_bytes(envelope, source=where)
    except SignatureError as err:
        raise _Refused(_refused(Status.INVALID_SIGNATURE, str(err))) from err
    try:
        verified = verify(
            envelope,
            trust.trusted_keys(),
            threshold,
            payload_type=MANIFEST_PAYLOAD_TYPE,
            source=where,
        )
    except SignatureError as err:
        raise _Refused(_why_not_verified(label, parsed, trust, err, threshold)) from err
    return list(verified.key_ids), verified.payload


def _signed_manifest(where: str, payload: bytes, key_id: str, now: datetime) -> Manifest:
    """The manifest the verified payload is; a bad one is malformed, not a bad signature
    (the signature held: the publisher signed bytes that are not a usable manifest)."""
    try:
        manifest = parse_manifest(payload, source=where)
        check_created(manifest, source=where, now=now)
    except ManifestError as err:
        raise _Refused(_refused(Status.MALFORMED_MANIFEST, str(err), key_id)) from err
    return manifest


def _check_identity(
    manifest: Manifest, name: str | None, version: str | None, platform: str | None, key_id: str
) -> str:
    """The plugin's name, once the manifest is shown to be this plugin's (name, version and
    platform as asked)."""
    claimed = f"{manifest.name} {manifest.version} ({manifest.platform})"
    if name is None:
        name = manifest.name
    elif manifest.name != name or (version is not None and manifest.version != version):
        wanted = f"{name} {version}" if version else name
        raise _Refused(
            _refused(
                Status.INVALID_SIGNATURE,
                f"plugin {wanted} carries the signed manifest of {claimed}, not its own",
                key_id,
            )
        )
    if platform is not None and manifest.platform not in ("any", platform):
        raise _Refused(
            _refused(
                Status.INVALID_SIGNATURE,
                f"plugin {name} carries a manifest for platform {manifest.platform},"
                f" not {platform}",
                key_id,
            )
        )
    return name


def _check_artifact(manifest: Manifest, name: str, artifact: bytes, key_id: str) -> None:
    """Refuse an artifact whose size or SHA-256 is not the signed one, saying which differs
    (a truncated or grown file says its size; a same-size change says its hash)."""
    signed = manifest.artifact
    digest = hashlib.sha256(artifact).hexdigest()
    if len(artifact) != signed.size:
        how = f"its size is {len(artifact)} bytes, the signed manifest says {signed.size}"
    elif not hmac.compare_digest(digest, signed.sha256):
        got, want = digest[:12], signed.sha256[:12]
        how = f"its SHA-256 is {got}..., the signed manifest says {want}..."
    else:
        return
    raise _Refused(
        _refused(
            Status.MODIFIED,
            f"the artifact {signed.filename} of plugin {name} was modified: {how}",
            key_id,
        )
    )
