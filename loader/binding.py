"""What binds a verified release beyond its signature: `plugins.lock`, the types the user
may narrow, and the privilege a signer earns.

Why this exists: a release can verify (trusted signature, matching hashes) and still not be
the one the user installed: other bytes or another version put in place, or a release signed
by other trusted keys than the ones that signed it at install. The lock (`loader.lockfile`)
is the installer's record, and these checks make it bind at boot and in `verify`, each
refusal one sentence. They run on releases that already verified; they are pure.

- **The lock**: the installed release must be the lock's version, its artifact's SHA-256 the
  lock's, and every key the lock records as its signer must still have verified it (a key
  untrusted or revoked since makes the release stop, not run on the remaining signers). A
  signed release the lock does not know is refused; an unsigned one runs without an entry only
  in dev mode (a plugin put in place by hand while developing).
- **Types**: plugins.json may narrow what the signed manifest declares, never add a type.
- **Signers, over time**: a release that verified at boot runs again (a restart, `module
  enable`) only while enough of the keys that signed it are still trusted and not revoked
  (`signer_refusal`, against the trust store as it is now).
- **Privilege**: `"privileged": true` in plugins.json takes effect only for a release signed
  by an `official` key, one the user granted it to (`pm-plugins grant NAME privileged`,
  recorded in the lock against its signers), or an unsigned release in dev mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from keys.store import TrustStore
from loader.lockfile import Locked
from loader.manifest import Manifest
from loader.plugins_json import PluginEntry
from loader.verify import Verdict

__all__ = ["lock_mismatch", "privilege_refusal", "signer_refusal", "types_refusal"]


def _keys(ids: Sequence[str]) -> str:
    return ", ".join(f"{k[:12]}..." for k in ids) or "no key (unsigned)"


def lock_mismatch(
    name: str,
    version: str,
    digest: str,
    verdict: Verdict,
    locked: Locked | None,
    *,
    dev_mode: bool,
) -> str | None:
    """Why the verified release differs from the lock's record of it (None: it does not).
    `digest` is the SHA-256 of the artifact bytes read."""
    label = f"plugin {name} {version}"
    if locked is None:
        if verdict.unsigned and dev_mode:
            return None
        return (
            f"{label} is not recorded in plugins.lock, so nothing says it is the release you "
            "installed; install it with `pm-plugins install`"
        )
    if locked.version != version:
        return (
            f"plugin {name}: the installed release is {version} but plugins.lock records "
            f"{locked.version}; install the version you want with `pm-plugins install`"
        )
    if digest != locked.sha256:
        return (
            f"{label} differs from plugins.lock: its artifact's SHA-256 is {digest[:12]}..., "
            f"the lock records {locked.sha256[:12]}..."
        )
    verified = set(verdict.key_ids)
    missing = [k for k in locked.signers if k not in verified]
    if missing or (verified and not locked.signers):
        return (
            f"{label} differs from plugins.lock: it was installed signed by "
            f"{_keys(locked.signers)} and is now verified as signed by "
            f"{_keys(sorted(verified))}"
        )
    return None


def types_refusal(entry: PluginEntry, manifest: Manifest | None) -> str | None:
    """Why the entry's types are refused: one the signed manifest does not declare."""
    if manifest is None or not entry.types:
        return None
    added = [t for t in entry.types if t not in manifest.types]
    if not added:
        return None
    return (
        f"plugin {entry.name}: plugins.json gives it type {', '.join(added)}, which its signed "
        f"manifest does not declare ({', '.join(manifest.types)}); types may only be narrowed"
    )


def privilege_refusal(
    entry: PluginEntry, verdict: Verdict | None, locked: Locked | None
) -> str | None:
    """Why `"privileged": true` does not take effect (None: it does, or was not asked)."""
    if not entry.privileged or verdict is None:
        return None
    if verdict.unsigned or verdict.trust_level == "official":
        return None
    if locked is not None and "privileged" in locked.grants:
        return None
    return (
        f"plugin {entry.name} runs unprivileged: plugins.json asks for privileged, but it is "
        f"signed by a {verdict.trust_level or 'untrusted'} key, not an official one; grant it "
        f"with `pm-plugins grant {entry.name} privileged`"
    )


def signer_refusal(
    name: str, verdict: Verdict, trust: TrustStore, *, threshold: int, dev_mode: bool
) -> str | None:
    """Why a release that verified earlier may not run now: too few of the keys whose
    signatures verified are still trusted (revoked or untrusted since)."""
    if verdict.unsigned:
        return None if dev_mode else f"plugin {name} is unsigned and dev mode is off"
    still = [k for k in verdict.key_ids if trust.is_trusted(k)]
    if len(still) >= threshold:
        return None
    gone = ", ".join(
        f"{k[:12]}... ({'revoked' if trust.is_revoked(k) else 'no longer trusted'})"
        for k in verdict.key_ids
        if k not in still
    )
    return (
        f"plugin {name} may no longer run: it is signed by {gone}; {len(still)} trusted "
        f"signature(s) remain and this host requires {threshold}"
    )
