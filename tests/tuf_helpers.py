"""Shared by tests/test_index.py and tests/test_tuf_client.py: packages, a TUF index, a
loopback HTTP server that can misbehave, and tools to forge metadata with real keys."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.metadata import Metadata, MetaFile  # type: ignore[attr-defined]

from index import IndexRepo, ReleaseInfo
from keys import dsse, ed25519

PASSPHRASE = b"test passphrase"
PAYLOAD_TYPE = "application/vnd.pm-plugins.manifest+json"
CREATED = "2026-11-23T09:00:00Z"


def manifest_payload(
    name: str,
    version: str,
    artifact: bytes,
    *,
    platform: str = "any",
    filename: str | None = None,
    publisher: str = "Test Publisher",
    requires: Mapping[str, Any] | None = None,
    types: Iterable[str] = ("resolver",),
) -> bytes:
    doc = {
        "name": name,
        "version": version,
        "publisher": publisher,
        "description": f"the {name} plugin",
        "types": list(types),
        "requires": dict(requires or {"host": [], "plugins": {}}),
        "platform": platform,
        "artifact": {
            "filename": filename or f"{name}.pyz",
            "sha256": hashlib.sha256(artifact).hexdigest(),
            "size": len(artifact),
        },
        "created": CREATED,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def make_package(
    folder: Path,
    name: str,
    version: str,
    key: Ed25519PrivateKey,
    *,
    artifact: bytes | None = None,
    platform: str = "any",
    requires: Mapping[str, Any] | None = None,
) -> Path:
    """A package folder as `pm-plugins package` makes it: envelope + artifact."""
    content = artifact if artifact is not None else f"{name} {version} {platform}".encode()
    payload = manifest_payload(name, version, content, platform=platform, requires=requires)
    pkg = folder / f"{name}-{version}-{platform}"
    pkg.mkdir(parents=True)
    envelope = dsse.sign(payload, PAYLOAD_TYPE, [key])
    (pkg / "manifest.dsse.json").write_bytes(dsse.envelope_to_bytes(envelope))
    (pkg / f"{name}.pyz").write_bytes(content)
    return pkg


def release(
    name: str,
    version: str,
    key: Ed25519PrivateKey,
    *,
    artifact: bytes | None = None,
    platform: str = "any",
    requires: Mapping[str, Any] | None = None,
) -> ReleaseInfo:
    """The same release as `make_package`, straight as index input."""
    content = artifact if artifact is not None else f"{name} {version} {platform}".encode()
    payload = manifest_payload(name, version, content, platform=platform, requires=requires)
    envelope = dsse.envelope_to_bytes(dsse.sign(payload, PAYLOAD_TYPE, [key]))
    return ReleaseInfo(
        name=name,
        version=version,
        platform=platform,
        artifact_filename=f"{name}.pyz",
        artifact=content,
        manifest=envelope,
        custom={
            "types": ["resolver"],
            "requires": dict(requires or {"host": [], "plugins": {}}),
            "description": f"the {name} plugin",
            "publisher": "Test Publisher",
            "publisher_key_id": ed25519.key_id(key),
        },
    )


# -- a server that can misbehave -------------------------------------------------------------


class IndexServer:
    """Serves `root` (changeable at any time) on 127.0.0.1; records request paths.

    `endless`: paths answered with an endless body; `fail`: path -> how many times to
    answer 503 before serving.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[str] = []
        self.endless: set[str] = set()
        self.fail: dict[str, int] = {}
        self.endless_sent = 0
        state = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(state.root), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                rel = unquote(urlsplit(self.path).path)
                state.requests.append(rel)
                if state.fail.get(rel, 0) > 0:
                    state.fail[rel] -= 1
                    self.send_error(503)
                    return
                if rel in state.endless:
                    self.send_response(200)
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        for _ in range(1024):  # at most 64 MiB
                            self.wfile.write(chunk)
                            state.endless_sent += len(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def metadata_requests(self) -> list[str]:
        return [r for r in self.requests if r.startswith("/metadata/")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- forging metadata with real keys ---------------------------------------------------------


def load(pub: Path, filename: str) -> Metadata[Any]:
    return Metadata.from_bytes((pub / "metadata" / filename).read_bytes())


def signed_bytes(md: Metadata[Any], signers: Iterable[Signer]) -> bytes:
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    data: bytes = md.to_bytes()
    return data


def timestamp_version(pub: Path) -> int:
    version: int = load(pub, "timestamp.json").signed.version
    return version


def snapshot_meta(pub: Path) -> Metadata[Any]:
    ts = load(pub, "timestamp.json")
    return load(pub, f"{ts.signed.snapshot_meta.version}.snapshot.json")


def forge_release(
    repo: IndexRepo,
    pub: Path,
    roles: Mapping[str, tuple[Metadata[Any], list[Signer]]],
    *,
    meta: Mapping[str, MetaFile] | None = None,
) -> None:
    """Publish `roles` (each re-signed by its signers, version as set) plus a new snapshot
    and timestamp signed with the repository's own keys: what a holder of the online
    keys (or a malicious publisher, for its own role) can put on the server."""
    snapshot = snapshot_meta(pub)
    for role, (md, signers) in roles.items():
        data = signed_bytes(md, signers)
        (pub / "metadata" / f"{md.signed.version}.{role}.json").write_bytes(data)
        snapshot.signed.meta[f"{role}.json"] = MetaFile(md.signed.version, len(data))
    for name, info in (meta or {}).items():
        snapshot.signed.meta[name] = info
    snapshot.signed.version += 1
    snap_bytes = signed_bytes(snapshot, repo.role_signers("snapshot"))
    (pub / "metadata" / f"{snapshot.signed.version}.snapshot.json").write_bytes(snap_bytes)
    ts = load(pub, "timestamp.json")
    ts.signed.version += 1
    ts.signed.snapshot_meta = MetaFile(
        snapshot.signed.version,
        len(snap_bytes),
        {"sha256": hashlib.sha256(snap_bytes).hexdigest()},
    )
    (pub / "metadata" / "timestamp.json").write_bytes(
        signed_bytes(ts, repo.role_signers("timestamp"))
    )


def cached_version(cache: Path, role: str) -> int | None:
    """The version of `role` in a client's cache, None if absent."""
    file = cache / "metadata" / f"{role}.json"
    if not file.exists():
        return None
    version: int = Metadata.from_bytes(file.read_bytes()).signed.version
    return version
