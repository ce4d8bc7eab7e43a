"""The trust table of DESIGN.md as one parametrized test over `verify_plugin`, with real keys."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from keys import dsse, ed25519
from keys.store import TrustStore
from loader.manifest import Artifact, Manifest, Requires, manifest_to_bytes
from loader.verify import MANIFEST_PAYLOAD_TYPE, Status, verify_plugin

ARTIFACT = b"#!/bin/sh\necho hosts plugin\n"


def manifest_bytes(name: str = "hosts", version: str = "1.0.0", data: bytes = ARTIFACT) -> bytes:
    return manifest_to_bytes(
        Manifest(
            name=name,
            version=version,
            publisher="Example Publisher",
            description="test release",
            types=("resolver",),
            requires=Requires(),
            platform="any",
            artifact=Artifact("plugin", hashlib.sha256(data).hexdigest(), len(data)),
            created="2026-11-23T09:00:00Z",
        )
    )


@dataclass
class World:
    trust: TrustStore
    official: ed25519.PrivateKey
    stranger: ed25519.PrivateKey
    revoked: ed25519.PrivateKey

    def signed(self, payload: bytes, *keys: ed25519.PrivateKey) -> bytes:
        return dsse.envelope_to_bytes(
            dsse.sign(payload, MANIFEST_PAYLOAD_TYPE, list(keys) or [self.official])
        )


@pytest.fixture(scope="module")
def world() -> World:
    official, stranger, revoked = ed25519.generate(), ed25519.generate(), ed25519.generate()
    trust = TrustStore({}, set())
    trust.trust(official.public_key(), "official", "Example")
    trust.trust(revoked.public_key(), "community", "Compromised")
    trust.revoke(ed25519.key_id(revoked.public_key()))
    return World(trust, official, stranger, revoked)


def flip_signature(envelope: bytes) -> bytes:
    doc = json.loads(envelope)
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[0] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return json.dumps(doc).encode()


def swap_payload(envelope: bytes, payload: bytes) -> bytes:
    doc = json.loads(envelope)
    doc["payload"] = base64.b64encode(payload).decode()
    return json.dumps(doc).encode()


Case = Callable[[World], tuple[bytes | None, bytes]]

CASES: dict[str, tuple[Case, Status, bool, bool]] = {
    # name: (build envelope+artifact, status, runs normally, runs in dev mode)
    "signed-trusted": (
        lambda w: (w.signed(manifest_bytes()), ARTIFACT),
        Status.VERIFIED,
        True,
        True,
    ),
    "unsigned": (lambda w: (None, ARTIFACT), Status.UNSIGNED, False, True),
    "bad-signature": (
        lambda w: (flip_signature(w.signed(manifest_bytes())), ARTIFACT),
        Status.INVALID_SIGNATURE,
        False,
        False,
    ),
    "payload-swapped": (
        lambda w: (
            swap_payload(w.signed(manifest_bytes()), manifest_bytes(data=b"evil")),
            b"evil",
        ),
        Status.INVALID_SIGNATURE,
        False,
        False,
    ),
    "untrusted-key": (
        lambda w: (w.signed(manifest_bytes(), w.stranger), ARTIFACT),
        Status.UNTRUSTED_KEY,
        False,
        False,
    ),
    "revoked-key": (
        lambda w: (w.signed(manifest_bytes(), w.revoked), ARTIFACT),
        Status.REVOKED_KEY,
        False,
        False,
    ),
    "flipped-artifact-byte": (
        lambda w: (w.signed(manifest_bytes()), ARTIFACT[:-2] + b"X\n"),
        Status.MODIFIED,
        False,
        False,
    ),
    "another-plugins-manifest": (
        lambda w: (w.signed(manifest_bytes(name="allowlist")), ARTIFACT),
        Status.INVALID_SIGNATURE,
        False,
        False,
    ),
    "other-version": (
        lambda w: (w.signed(manifest_bytes(version="0.9.0")), ARTIFACT),
        Status.INVALID_SIGNATURE,
        False,
        False,
    ),
    "garbage-envelope": (
        lambda w: (b"{not json", ARTIFACT),
        Status.INVALID_SIGNATURE,
        False,
        False,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dev_mode", [False, True])
def test_trust_table(world: World, case: str, dev_mode: bool) -> None:
    build, status, runs_normally, runs_in_dev = CASES[case]
    envelope, artifact = build(world)
    verdict = verify_plugin(
        name="hosts",
        version="1.0.0",
        envelope=envelope,
        artifact=artifact,
        trust=world.trust,
        dev_mode=dev_mode,
    )
    assert verdict.status is status, verdict.reason
    assert verdict.runs is (runs_in_dev if dev_mode else runs_normally)
    assert verdict.reason and "\n" not in verdict.reason


def test_verified_names_key_and_level(world: World) -> None:
    verdict = verify_plugin(
        name="hosts",
        envelope=world.signed(manifest_bytes()),
        artifact=ARTIFACT,
        trust=world.trust,
        dev_mode=False,
    )
    assert verdict.key_id == ed25519.key_id(world.official.public_key())
    assert verdict.trust_level == "official"
    assert verdict.manifest is not None and verdict.manifest.version == "1.0.0"


def test_untrusted_key_says_the_way_out(world: World) -> None:
    verdict = verify_plugin(
        name="hosts",
        envelope=world.signed(manifest_bytes(), world.stranger),
        artifact=ARTIFACT,
        trust=world.trust,
        dev_mode=False,
    )
    assert "not in your trust store" in verdict.reason
    assert "pm-plugins keys trust" in verdict.reason


def test_threshold_counts_distinct_keys_not_signature_entries(world: World) -> None:
    doc = dsse.sign(manifest_bytes(), MANIFEST_PAYLOAD_TYPE, [world.official])
    doc["signatures"] = doc["signatures"] * 2  # the same key's signature twice
    verdict = verify_plugin(
        name="hosts",
        envelope=dsse.envelope_to_bytes(doc),
        artifact=ARTIFACT,
        trust=world.trust,
        dev_mode=False,
        threshold=2,
    )
    assert verdict.status is Status.INVALID_SIGNATURE and not verdict.runs


def test_wrong_platform_is_refused(world: World) -> None:
    payload = manifest_bytes().replace(b'"platform":"any"', b'"platform":"linux-aarch64"')
    verdict = verify_plugin(
        name="hosts",
        envelope=world.signed(payload),
        artifact=ARTIFACT,
        trust=world.trust,
        dev_mode=True,
        platform="linux-x86_64",
    )
    assert verdict.status is Status.INVALID_SIGNATURE
    assert "linux-aarch64" in verdict.reason
