"""Taking a publisher's package into the index: the release a package folder holds.

Why this exists apart from the repository: reading a package means parsing its signed
manifest with the loader's own rules (`loader.manifest`, `loader.verify`), and checking the
artifact against it, before anything is written to the index.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from index.errors import IndexRepoError
from index.paths import MANIFEST_FILENAME
from index.repository import IndexRepo, ReleaseInfo
from keys import dsse
from loader.manifest import Manifest, parse_manifest
from loader.verify import MANIFEST_PAYLOAD_TYPE

__all__ = ["MAX_ENVELOPE", "release_from_package"]

#: The largest manifest envelope a package may hold.
MAX_ENVELOPE = 1 << 20


def release_from_package(folder: Path, repo: IndexRepo) -> ReleaseInfo:
    """The release in a package folder (``manifest.dsse.json`` + the artifact it names).

    The envelope must verify with the keys that may sign that plugin name
    (:meth:`index.publishers.PublishersMixin.verify_publisher`: the delegated publisher
    role's, else a known publisher key for the name; never a host module's name), and the
    verified payload is the one parsed; the first key that verified is recorded as the
    publisher's. The artifact's size and SHA-256 must match the manifest.
    """
    folder = Path(folder)
    envelope_file = folder / MANIFEST_FILENAME
    data = _read_envelope(folder, envelope_file)
    manifest, signer = _manifest_and_signer(data, str(envelope_file), repo)
    artifact_file = folder / manifest.artifact.filename
    _check_artifact(folder, artifact_file, manifest)
    custom: dict[str, Any] = {
        "types": list(manifest.types),
        "requires": {
            "host": list(manifest.requires.host_modules),
            "plugins": {name: str(spec) for name, spec in manifest.requires.plugins},
        },
        "description": manifest.description,
        "publisher": manifest.publisher,
        "publisher_key_id": signer,
    }
    return ReleaseInfo(
        name=manifest.name,
        version=manifest.version,
        platform=manifest.platform,
        artifact_filename=manifest.artifact.filename,
        artifact=artifact_file,
        manifest=data,
        custom=custom,
    )


def _read_envelope(folder: Path, envelope_file: Path) -> bytes:
    try:
        with open(envelope_file, "rb") as f:
            data = f.read(MAX_ENVELOPE + 1)
    except OSError as e:
        raise IndexRepoError(
            f"{folder} is not a plugin package ({envelope_file.name} cannot be read:"
            f" {e.strerror or e})"
        ) from e
    if len(data) > MAX_ENVELOPE:
        raise IndexRepoError(f"{envelope_file}: is larger than {MAX_ENVELOPE} bytes")
    return data


def _manifest_and_signer(data: bytes, source: str, repo: IndexRepo) -> tuple[Manifest, str]:
    """The manifest to index and the key id named as its publisher's: the verified
    payload and the key that verified it."""
    envelope = dsse.envelope_from_bytes(data, source=source)
    if envelope.payload_type != MANIFEST_PAYLOAD_TYPE:
        raise IndexRepoError(
            f'{source}: the payload type is "{envelope.payload_type}", not a plugin manifest'
        )
    claimed = parse_manifest(envelope.payload, source=source)
    where = f"package {claimed.name} {claimed.version} ({source})"
    verified = repo.verify_publisher(claimed.name, data, where)
    return parse_manifest(verified.payload, source=source), verified.key_ids[0]


def _check_artifact(folder: Path, artifact_file: Path, manifest: Manifest) -> None:
    try:
        size = artifact_file.stat().st_size
    except OSError as e:
        raise IndexRepoError(
            f"{folder}: the artifact {manifest.artifact.filename} cannot be read"
            f" ({e.strerror or e})"
        ) from e
    digest = hashlib.sha256()
    with open(artifact_file, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if size != manifest.artifact.size or digest.hexdigest() != manifest.artifact.sha256:
        raise IndexRepoError(
            f"{folder}: the artifact {manifest.artifact.filename} does not match the size"
            " and SHA-256 in its manifest"
        )
