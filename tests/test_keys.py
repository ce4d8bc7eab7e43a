"""keys.ed25519, keys.dsse and keys.store: signing, verifying and trusting."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys import dsse, ed25519
from keys.errors import KeyFileError, KeysError, SignatureError, TrustStoreError
from keys.store import TrustStore

PT = "application/vnd.pm-plugins.manifest+json"
PAYLOAD = b'{"name": "hosts", "version": "1.0.0"}'


@pytest.fixture
def alice() -> Ed25519PrivateKey:
    return ed25519.generate()


@pytest.fixture
def bob() -> Ed25519PrivateKey:
    return ed25519.generate()


def trusted(*keys: Ed25519PrivateKey) -> dict[str, Any]:
    return {ed25519.key_id(k): k.public_key() for k in keys}


def as_bytes(envelope: dict[str, Any]) -> bytes:
    return dsse.envelope_to_bytes(envelope)


# ---- ed25519 -----------------------------------------------------------------------


def test_key_id_is_sha256_of_raw_public_key(alice: Ed25519PrivateKey) -> None:
    raw = alice.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert ed25519.key_id(alice.public_key()) == hashlib.sha256(raw).hexdigest()
    assert ed25519.key_id(alice) == ed25519.key_id(alice.public_key())


def test_public_key_text_round_trip(alice: Ed25519PrivateKey) -> None:
    text = ed25519.public_key_to_text(alice.public_key())
    back = ed25519.public_key_from_text(text)
    assert ed25519.key_id(back) == ed25519.key_id(alice)


@pytest.mark.parametrize("junk", ["not base64!", "AAAA\n", "QUJD", ""])
def test_public_key_text_junk_refused(junk: str) -> None:
    with pytest.raises(KeyFileError):
        ed25519.public_key_from_text(junk)


def test_private_key_file_round_trip(tmp_path: Path, alice: Ed25519PrivateKey) -> None:
    path = tmp_path / "signing.pem"
    ed25519.save_private_key(path, alice, b"correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    loaded = ed25519.load_private_key(path, b"correct horse")
    assert ed25519.key_id(loaded) == ed25519.key_id(alice)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_private_key_wrong_passphrase(tmp_path: Path, alice: Ed25519PrivateKey) -> None:
    path = tmp_path / "signing.pem"
    ed25519.save_private_key(path, alice, b"correct horse")
    with pytest.raises(KeyFileError, match="passphrase is wrong") as info:
        ed25519.load_private_key(path, b"battery staple")
    assert "\n" not in str(info.value)
    with pytest.raises(KeyFileError, match="no passphrase"):
        ed25519.load_private_key(path, None)


def test_private_key_file_problems(tmp_path: Path, alice: Ed25519PrivateKey) -> None:
    path = tmp_path / "signing.pem"
    with pytest.raises(KeyFileError, match="cannot be read"):
        ed25519.load_private_key(path, b"x")
    with pytest.raises(KeyFileError, match="non-empty passphrase"):
        ed25519.save_private_key(path, alice, b"")
    path.write_bytes(
        alice.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError, match="not encrypted"):
        ed25519.load_private_key(path, b"x")
    with pytest.raises(KeyFileError, match="already exists"):
        ed25519.save_private_key(path, alice, b"pw")
    ed25519.save_private_key(path, alice, b"pw", overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"garbage")
    with pytest.raises(KeyFileError, match="not an encrypted"):
        ed25519.load_private_key(path, b"pw")


def test_passphrase_from_env() -> None:
    assert ed25519.passphrase_from_env({}) is None
    assert ed25519.passphrase_from_env({"PM_PLUGINS_KEY_PASSPHRASE": ""}) is None
    assert ed25519.passphrase_from_env({"PM_PLUGINS_KEY_PASSPHRASE": "pässe"}) == "pässe".encode()


def test_passphrase_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ed25519.PASSPHRASE_ENV, "s3cret")
    assert ed25519.passphrase_from_env() == b"s3cret"


# ---- dsse --------------------------------------------------------------------------


def test_pae_vector() -> None:
    assert (
        dsse.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert dsse.pae("", b"") == b"DSSEv1 0  0 "


def test_round_trip(alice: Ed25519PrivateKey) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice])
    assert envelope["payloadType"] == PT
    assert base64.b64decode(envelope["payload"]) == PAYLOAD
    assert envelope["signatures"][0]["keyid"] == ed25519.key_id(alice)
    result = dsse.verify(as_bytes(envelope), trusted(alice), payload_type=PT)
    assert result == dsse.VerifiedPayload(PAYLOAD, PT, (ed25519.key_id(alice),))


def test_envelope_from_bytes_decodes(alice: Ed25519PrivateKey) -> None:
    env = dsse.envelope_from_bytes(as_bytes(dsse.sign(PAYLOAD, PT, [alice])))
    assert env.payload == PAYLOAD
    assert len(env.signatures) == 1 and len(env.signatures[0].sig) == 64
    assert dsse.envelope_to_bytes(env) == as_bytes(dsse.sign(PAYLOAD, PT, [alice]))


def test_tampered_payload_refused(alice: Ed25519PrivateKey) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice])
    envelope["payload"] = base64.b64encode(PAYLOAD.replace(b"hosts", b"evil!")).decode()
    with pytest.raises(SignatureError, match=r"0 valid signature\(s\).*1 needed.*did not verify"):
        dsse.verify(as_bytes(envelope), trusted(alice), payload_type=PT)


def test_tampered_signature_refused(alice: Ed25519PrivateKey) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice])
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SignatureError):
        dsse.verify(as_bytes(envelope), trusted(alice), payload_type=PT)


def test_payload_type_is_signed(alice: Ed25519PrivateKey) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice])
    with pytest.raises(SignatureError, match="payload type"):
        dsse.verify(as_bytes(envelope), trusted(alice), payload_type="text/plain")
    envelope["payloadType"] = "text/plain"
    with pytest.raises(SignatureError, match="0 valid"):
        dsse.verify(as_bytes(envelope), trusted(alice), payload_type="text/plain")


@pytest.mark.parametrize("field", ["payload", "sig"])
@pytest.mark.parametrize("junk", [" ", "\n", "!", "=", "A"])
def test_base64_junk_refused_not_trimmed(alice: Ed25519PrivateKey, field: str, junk: str) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice])
    if field == "payload":
        envelope["payload"] += junk
    else:
        envelope["signatures"][0]["sig"] += junk
    with pytest.raises(SignatureError, match=f'field "{field}" is not valid base64'):
        dsse.verify(as_bytes(envelope), trusted(alice), payload_type=PT)


def test_duplicate_signatures_by_one_key_count_once(
    alice: Ed25519PrivateKey, bob: Ed25519PrivateKey
) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice])
    envelope["signatures"] = envelope["signatures"] * 2
    with pytest.raises(SignatureError, match=r"1 valid signature\(s\).*2 needed"):
        dsse.verify(as_bytes(envelope), trusted(alice, bob), threshold=2, payload_type=PT)
    # sign() itself never signs twice with one key.
    assert len(dsse.sign(PAYLOAD, PT, [alice, alice])["signatures"]) == 1


def test_threshold_met_by_distinct_keys(alice: Ed25519PrivateKey, bob: Ed25519PrivateKey) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice, bob])
    result = dsse.verify(as_bytes(envelope), trusted(alice, bob), threshold=2, payload_type=PT)
    assert result.key_ids == (ed25519.key_id(alice), ed25519.key_id(bob))


def test_untrusted_key_ignored(alice: Ed25519PrivateKey, bob: Ed25519PrivateKey) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice, bob])
    result = dsse.verify(as_bytes(envelope), trusted(alice), payload_type=PT)
    assert result.key_ids == (ed25519.key_id(alice),)
    with pytest.raises(SignatureError, match=r"2 needed.*1 by an unknown or revoked key"):
        dsse.verify(as_bytes(envelope), trusted(alice), threshold=2, payload_type=PT)
    with pytest.raises(SignatureError, match="0 valid"):
        dsse.verify(as_bytes(dsse.sign(PAYLOAD, PT, [bob])), trusted(alice), payload_type=PT)


def test_signature_claiming_trusted_keyid_by_other_key(
    alice: Ed25519PrivateKey, bob: Ed25519PrivateKey
) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [bob])
    envelope["signatures"][0]["keyid"] = ed25519.key_id(alice)
    with pytest.raises(SignatureError, match="did not verify"):
        dsse.verify(as_bytes(envelope), trusted(alice), payload_type=PT)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda e: e.pop("payloadType"), 'field "payloadType" is missing'),
        (lambda e: e.update(payload=1), 'field "payload" must be a string'),
        (lambda e: e.update(signatures=[]), "has no signatures"),
        (lambda e: e.update(signatures={}), 'field "signatures" must be a list'),
        (lambda e: e.update(extra=1), 'unexpected field "extra"'),
        (lambda e: e["signatures"][0].pop("keyid"), 'signature 1: field "keyid" is missing'),
        (lambda e: e["signatures"][0].update(sig="QUJD"), "64 bytes, not 3"),
        (lambda e: e["signatures"].append(5), "signature 2: the entry must be an object"),
    ],
)
def test_malformed_envelope_refused(alice: Ed25519PrivateKey, mutate: Any, match: str) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice])
    mutate(envelope)
    with pytest.raises(SignatureError, match=match):
        dsse.verify(as_bytes(envelope), trusted(alice), payload_type=PT)


def test_envelope_strict_json(alice: Ed25519PrivateKey) -> None:
    envelope = dsse.sign(PAYLOAD, PT, [alice])
    text = json.dumps(envelope)
    dup = text[:-1] + ', "payload": "e30="}'
    with pytest.raises(SignatureError, match='key "payload" twice'):
        dsse.verify(dup.encode(), trusted(alice), payload_type=PT, source="manifest.dsse.json")
    with pytest.raises(SignatureError, match="byte order mark"):
        dsse.verify(b"\xef\xbb\xbf" + text.encode(), trusted(alice), payload_type=PT)


def test_verify_caller_bugs_are_value_errors(
    alice: Ed25519PrivateKey, bob: Ed25519PrivateKey
) -> None:
    data = as_bytes(dsse.sign(PAYLOAD, PT, [alice]))
    with pytest.raises(ValueError):
        dsse.verify(data, trusted(alice), threshold=0, payload_type=PT)
    with pytest.raises(ValueError):
        dsse.verify(data, {ed25519.key_id(alice): bob.public_key()}, payload_type=PT)
    with pytest.raises(ValueError):
        dsse.sign(PAYLOAD, PT, [])
    assert not issubclass(ValueError, KeysError)


# ---- store -------------------------------------------------------------------------


def test_store_trust_revoke(alice: Ed25519PrivateKey, bob: Ed25519PrivateKey) -> None:
    store = TrustStore()
    a, b = ed25519.key_id(alice), ed25519.key_id(bob)
    store.trust(alice.public_key(), "official", "Safing")
    store.trust(bob.public_key(), "community", "Bob")
    assert set(store.trusted_keys()) == {a, b}
    assert store.level_of(a) == "official"
    store.revoke(b)
    assert set(store.trusted_keys()) == {a}
    assert store.is_revoked(b) and store.level_of(b) is None
    with pytest.raises(TrustStoreError, match="revoked"):
        store.trust(bob.public_key(), "official", "Bob again")
    store.untrust(a)
    assert store.trusted_keys() == {}
    with pytest.raises(TrustStoreError):
        store.untrust(a)
    with pytest.raises(TrustStoreError, match="level"):
        store.trust(alice.public_key(), "admin", "x")
    with pytest.raises(TrustStoreError, match="not a key id"):
        store.revoke("ABC")


def test_revoked_key_excluded_from_verify(alice: Ed25519PrivateKey) -> None:
    store = TrustStore()
    store.trust(alice.public_key(), "official", "Safing")
    data = as_bytes(dsse.sign(PAYLOAD, PT, [alice]))
    assert dsse.verify(data, store.trusted_keys(), payload_type=PT).payload == PAYLOAD
    store.revoke(ed25519.key_id(alice))
    with pytest.raises(SignatureError, match="unknown or revoked"):
        dsse.verify(data, store.trusted_keys(), payload_type=PT)


def test_store_file_round_trip(
    tmp_path: Path, alice: Ed25519PrivateKey, bob: Ed25519PrivateKey
) -> None:
    path = tmp_path / "trust.json"
    assert TrustStore.load(path) == TrustStore()
    store = TrustStore()
    store.trust(alice.public_key(), "official", "Safing")
    store.trust(bob.public_key(), "community", "Bob")
    store.revoke(ed25519.key_id(bob))
    store.revoke("0" * 64)
    store.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    again = TrustStore.load(path)
    assert again.revoked == store.revoked
    assert set(again.keys) == set(store.keys)
    assert again.level_of(ed25519.key_id(alice)) == "official"
    assert again.keys[ed25519.key_id(bob)].label == "Bob"
    assert set(again.trusted_keys()) == {ed25519.key_id(alice)}


def _store_doc(alice: Ed25519PrivateKey) -> dict[str, Any]:
    store = TrustStore()
    store.trust(alice.public_key(), "official", "Safing")
    return store.to_dict()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d, k: d.update(version=2), "version 2 is not supported"),
        (lambda d, k: d.update(version=True), 'field "version" must be a whole number'),
        (lambda d, k: d["keys"][k].update(level="root"), 'field "level" must be'),
        (lambda d, k: d["keys"][k].update(publicKey="AAAA"), "32 bytes"),
        (lambda d, k: d["keys"][k].update(publicKey="!!"), "not valid base64"),
        (lambda d, k: d["keys"].update({"0" * 64: d["keys"][k]}), "does not match"),
        (lambda d, k: d["keys"][k].update(extra=1), 'unexpected field "extra"'),
        (lambda d, k: d.update(revoked=["x"]), "revoked entry 1 is not a key id"),
        (lambda d, k: d.update(revoked=[1]), "revoked entry 1 must be a string"),
    ],
)
def test_store_file_malformed(
    tmp_path: Path, alice: Ed25519PrivateKey, mutate: Any, match: str
) -> None:
    doc = _store_doc(alice)
    mutate(doc, ed25519.key_id(alice))
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TrustStoreError, match=match) as info:
        TrustStore.load(path)
    assert str(info.value).startswith(str(path))


def test_store_file_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    path.write_bytes(b'{"version": 1, "version": 1}')
    with pytest.raises(TrustStoreError, match="twice"):
        TrustStore.load(path)
