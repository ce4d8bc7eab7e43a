"""Small checks around the signed manifest (issue 14, item 10), each with real keys.

The dependency floor of python-tuf; a hidden artifact name, refused when packaging and when
parsing; refusals that name the plugin, the file and the field; a signed but malformed
manifest reported as malformed; a size mismatch that says so; a `created` from the future.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from keys import dsse
from keys.store import TrustStore
from loader import boot
from loader.boot import PlanStatus, plan_boot
from loader.home import Home
from loader.host_modules import CORE_VERSIONS
from loader.manifest import (
    MANIFEST_FILE,
    Artifact,
    Manifest,
    ManifestError,
    Requires,
    check_created,
    manifest_to_bytes,
    parse_manifest,
)
from loader.verify import MANIFEST_PAYLOAD_TYPE, Status, Verdict, verify_plugin
from registry_client.package import PackageError, build_package
from tests.boot_helpers import Publisher, install_signed, new_publisher, trust, write_source

ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = b"#!/bin/sh\necho hosts plugin\n"
CREATED = "2026-11-23T09:00:00Z"
CREATED_AT = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def manifest_doc(data: bytes = ARTIFACT, created: str = CREATED) -> dict[str, Any]:
    """A valid manifest payload for plugin hosts 1.0.0 as a JSON object (to break on purpose)."""
    manifest = Manifest(
        name="hosts",
        version="1.0.0",
        publisher="Example Publisher",
        description="test release",
        types=("resolver",),
        requires=Requires(),
        platform="any",
        artifact=Artifact("plugin", hashlib.sha256(data).hexdigest(), len(data)),
        created=created,
    )
    doc: dict[str, Any] = json.loads(manifest_to_bytes(manifest))
    return doc


def signed(publisher: Publisher, doc: dict[str, Any]) -> bytes:
    """`doc` as a payload, signed for real: the signature verifies whatever the payload says."""
    payload = json.dumps(doc, sort_keys=True).encode()
    return dsse.envelope_to_bytes(dsse.sign(payload, MANIFEST_PAYLOAD_TYPE, [publisher.key]))


@pytest.fixture(scope="module")
def publisher() -> Publisher:
    return new_publisher()


@pytest.fixture(scope="module")
def store(publisher: Publisher) -> TrustStore:
    store = TrustStore({}, set())
    store.trust(publisher.key.public_key(), "official", "Example")
    return store


def check(
    store: TrustStore,
    envelope: bytes,
    artifact: bytes = ARTIFACT,
    *,
    name: str | None = "hosts",
    dev_mode: bool = False,
    now: datetime = CREATED_AT,
) -> Verdict:
    return verify_plugin(
        name=name, envelope=envelope, artifact=artifact, trust=store, dev_mode=dev_mode, now=now
    )


# -- 1. the python-tuf floor ---------------------------------------------------------------------


def test_the_tuf_floor_excludes_5x_6x_and_7_0_0_and_admits_the_installed_tuf() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (tuf,) = [r for r in map(Requirement, project["dependencies"]) if r.name == "tuf"]
    # 5.x: no Updater(bootstrap=...); 6.x: no diamond-delegation fix; 7.0.0: broken hashing
    for refused in ("5.0.0", "5.1.0", "6.0.0", "7.0.0"):
        assert not tuf.specifier.contains(refused), f"tuf {refused} is admitted by {tuf}"
    assert tuf.specifier.contains("7.0.1")
    assert tuf.specifier.contains(importlib.metadata.version("tuf"))


# -- 2. a hidden artifact name -------------------------------------------------------------------


def with_executable(src: Path, name: str) -> Path:
    toml = src / "plugin.toml"
    toml.write_text(toml.read_text().replace('executable = "plugin"', f'executable = "{name}"'))
    return src


def test_package_refuses_a_hidden_executable(publisher: Publisher, tmp_path: Path) -> None:
    src = with_executable(write_source(tmp_path, "hosts"), ".plugin")
    (src / "plugin").rename(src / ".plugin")
    with pytest.raises(PackageError) as info:
        build_package(src, publisher.key, tmp_path / "dist")
    message = str(info.value)
    assert message.startswith(f'{src / "plugin.toml"}: field "executable" is ".plugin", a hidden')
    assert "never loads" in message and "\n" not in message
    assert not (tmp_path / "dist").exists()


def test_package_refuses_an_executable_in_a_subfolder(publisher: Publisher, tmp_path: Path) -> None:
    src = with_executable(write_source(tmp_path, "hosts"), "bin/plugin")
    (src / "bin").mkdir()
    (src / "plugin").rename(src / "bin" / "plugin")
    with pytest.raises(PackageError, match='field "executable" is "bin/plugin", which is not a'):
        build_package(src, publisher.key, tmp_path / "dist")


@pytest.mark.parametrize(
    ("filename", "why"),
    [(".plugin", "a hidden file name"), ("..plugin", "a hidden file name"), ("a/b", "plain")],
)
def test_the_manifest_refuses_a_hidden_or_nested_artifact_filename(filename: str, why: str) -> None:
    doc = manifest_doc()
    doc["artifact"]["filename"] = filename
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(doc).encode(), source=MANIFEST_FILE)
    assert str(info.value).startswith(f'{MANIFEST_FILE}: field "artifact.filename" is "{filename}"')
    assert why in str(info.value)


# -- 3. refusals name the plugin, the file and the field ----------------------------------------


def test_a_manifest_refusal_names_the_plugin_the_file_and_the_field(
    publisher: Publisher, store: TrustStore
) -> None:
    doc = manifest_doc()
    doc["artifact"]["size"] = -1
    verdict = check(store, signed(publisher, doc))
    assert verdict.reason.startswith('plugin hosts: manifest.dsse.json: field "artifact.size" ')
    unnamed = check(store, signed(publisher, doc), name=None)  # an install from a path
    assert unnamed.reason.startswith('manifest.dsse.json: field "artifact.size" ')


def test_an_envelope_refusal_names_the_plugin_and_the_file(store: TrustStore) -> None:
    verdict = check(store, b'{"payloadType": "x"}')
    assert verdict.status is Status.INVALID_SIGNATURE
    assert verdict.reason.startswith("plugin hosts: manifest.dsse.json: ")


def test_the_loader_and_the_manifest_agree_on_the_file_name() -> None:
    assert MANIFEST_FILE == boot.MANIFEST_FILE


# -- 4. signed but malformed ---------------------------------------------------------------------


@pytest.mark.parametrize("dev_mode", [False, True])
def test_a_signed_malformed_manifest_is_malformed_not_an_invalid_signature(
    publisher: Publisher, store: TrustStore, dev_mode: bool
) -> None:
    doc = manifest_doc()
    doc["types"] = "resolver"
    verdict = check(store, signed(publisher, doc), dev_mode=dev_mode)
    assert verdict.status is Status.MALFORMED_MANIFEST and not verdict.runs
    assert verdict.key_id == publisher.key_id  # the signature held: it names who signed
    assert 'field "types" must be a list' in verdict.reason


def test_every_verification_status_is_a_plan_status() -> None:
    assert {s.value for s in Status} <= {p.value for p in PlanStatus}
    assert PlanStatus(Status.MALFORMED_MANIFEST.value) is PlanStatus.MALFORMED_MANIFEST


def test_boot_reports_a_signed_malformed_manifest_as_malformed(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    publisher = new_publisher()
    trust(home, publisher)
    release = install_signed(home, publisher, write_source(tmp_path, "hosts"), tmp_path)
    doc = json.loads(dsse.envelope_from_bytes((release / MANIFEST_FILE).read_bytes()).payload)
    doc["publisher"] = ""
    (release / MANIFEST_FILE).write_bytes(signed(publisher, doc))
    plan = plan_boot(
        home, trust=TrustStore.load(home.trust_store), dev_mode=False, core_modules=CORE_VERSIONS
    )
    (row,) = plan.plugins
    assert row.status is PlanStatus.MALFORMED_MANIFEST
    assert row.reason == 'plugin hosts: manifest.dsse.json: field "publisher" is empty'


# -- 5. size or hash -----------------------------------------------------------------------------


def test_a_size_mismatch_says_the_sizes(publisher: Publisher, store: TrustStore) -> None:
    verdict = check(store, signed(publisher, manifest_doc()), ARTIFACT[:-1])
    assert verdict.status is Status.MODIFIED
    assert verdict.reason == (
        f"the artifact plugin of plugin hosts was modified: its size is {len(ARTIFACT) - 1}"
        f" bytes, the signed manifest says {len(ARTIFACT)}"
    )


def test_a_same_size_change_says_the_hash(publisher: Publisher, store: TrustStore) -> None:
    changed = ARTIFACT[:-2] + b"X\n"
    verdict = check(store, signed(publisher, manifest_doc()), changed)
    assert verdict.status is Status.MODIFIED
    assert f"its SHA-256 is {hashlib.sha256(changed).hexdigest()[:12]}..." in verdict.reason
    assert "size" not in verdict.reason


# -- 6. created in the future --------------------------------------------------------------------


def test_a_manifest_created_more_than_a_day_ahead_is_refused(
    publisher: Publisher, store: TrustStore
) -> None:
    envelope = signed(publisher, manifest_doc())
    early = CREATED_AT - timedelta(days=1, seconds=1)
    verdict = check(store, envelope, now=early)
    assert verdict.status is Status.MALFORMED_MANIFEST and not verdict.runs
    assert verdict.reason.startswith(
        f'plugin hosts: manifest.dsse.json: field "created" is {CREATED}, more than a day after'
        " this machine's clock (2026-11-22T08:59:59Z)"
    )
    assert "\n" not in verdict.reason
    within = check(store, envelope, now=CREATED_AT - timedelta(hours=23))
    assert within.status is Status.VERIFIED, within.reason


def test_the_clock_is_this_machines_unless_given(publisher: Publisher, store: TrustStore) -> None:
    ahead = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    envelope = signed(publisher, manifest_doc(created=ahead))
    verdict = verify_plugin(
        name="hosts", envelope=envelope, artifact=ARTIFACT, trust=store, dev_mode=False
    )
    assert verdict.status is Status.MALFORMED_MANIFEST
    assert 'field "created"' in verdict.reason


def test_check_created_wants_an_aware_clock() -> None:
    manifest = parse_manifest(json.dumps(manifest_doc()).encode(), source=MANIFEST_FILE)
    check_created(manifest, source=MANIFEST_FILE, now=CREATED_AT)
    with pytest.raises(ValueError, match="aware"):
        check_created(manifest, source=MANIFEST_FILE, now=datetime(2026, 11, 23))
