"""Registry benchmark: a TUF index of 10,000 plugin releases, flat and with hash bins.

Measured in one run, in a temporary folder, over real HTTP on 127.0.0.1 (`index.serve`):

- the index: 2,500 plugins x 4 versions = 10,000 releases, each a signed DSSE manifest and
  a small distinct artifact, added with `IndexRepo.add_releases` (one batch) and published
  with `IndexRepo.publish` (the first publish signs every role and writes every file),
  once flat (every target in `targets`) and once with `HASH_BINS` succinct hash bins;
- cold install of one plugin: a client bootstrapped with root v1 runs `find(name)` and
  downloads the newest artifact; the metadata bytes it fetched (root probe, timestamp,
  snapshot, targets and, with bins, `bins` and one bin) are compared between the layouts;
- `update` with nothing new: a client on a warm cache runs `refresh()` (`UPDATE_REPEATS`
  times, after one untimed warm-up); which files it fetched, how many bytes, how long.
  The TUF client workflow always probes for the next root version (`N+1.root.json`, a
  404), so "only the timestamp" means one metadata file downloaded besides that probe;
- download+verify throughput of a 100 MB artifact (`RegistryClient.download`: HTTP,
  length bound, SHA-256 check by TUF, atomic rename) against `sha256sum` on the same
  file, both from the page cache, best of `VERIFY_REPEATS` each, alternating.

Run alone with `python -m bench.registry`; about a minute on 2 CPUs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    Report,
    Result,
    at_least,
    at_most,
    latency,
    loadavg,
    machine,
    use_this_python,
    write_report,
)
from index import IndexRepo, ReleaseInfo, make_server
from keys import dsse, ed25519
from loader.verify import MANIFEST_PAYLOAD_TYPE
from registry_client.tuf_client import RegistryClient, RequestsFetcher

NAME = "registry"
PLUGIN_COUNT = 2500
VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "2.0.0")
HASH_BINS = 512
UPDATE_REPEATS = {"flat": 3, "bins": 15}
ARTIFACT_BYTES = 100 * 1000 * 1000
VERIFY_REPEATS = 3
PASSPHRASE = b"bench passphrase"
MB = 1e6

TARGET_BINS_PCT = 5.0
TARGET_UPDATE_MS = 100.0
TARGET_UPDATE_FILES = 1
TARGET_VERIFY_RATIO = 0.9

DESCRIBE = {
    "publish_flat": "first IndexRepo.publish of 10,000 releases, flat; per s = releases/s",
    "publish_bins": f"the same with {HASH_BINS} hash bins",
    "cold_install_flat": "find(name) + download on a fresh cache, flat",
    "cold_install_bins": f"the same with {HASH_BINS} hash bins",
    "update_flat": "refresh() with nothing new on a warm cache, flat",
    "update_bins": f"refresh() with nothing new, {HASH_BINS} hash bins",
    "download_verify_100mb": "RegistryClient.download of 100 MB over HTTP; per s = MB/s",
    "sha256sum_100mb": "`sha256sum` on the same file; per s = MB/s",
}

log = logging.getLogger("bench.registry")


def plugin_name(i: int) -> str:
    return f"plugin-{i:05d}"


def make_releases(key: ed25519.PrivateKey) -> list[ReleaseInfo]:
    """10,000 releases with realistic manifests and small distinct artifacts."""
    out = []
    key_id = ed25519.key_id(key)
    for i in range(PLUGIN_COUNT):
        name = plugin_name(i)
        for version in VERSIONS:
            artifact = f"#!/usr/bin/env python3\n# {name} {version}\n".encode() + os.urandom(512)
            requires = {"host": ["firewall", "resolver"], "plugins": {}}
            if i:
                requires["plugins"] = {plugin_name(i - 1): ">=1,<3"}
            manifest = {
                "name": name,
                "version": version,
                "publisher": "pm-plugins bench",
                "description": f"benchmark plugin number {i}, release {version}",
                "types": ["decider", "reporter"],
                "requires": requires,
                "platform": "any",
                "artifact": {
                    "filename": f"{name}.pyz",
                    "sha256": hashlib.sha256(artifact).hexdigest(),
                    "size": len(artifact),
                },
                "created": "2026-11-23T09:00:00Z",
            }
            payload = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
            envelope = dsse.sign(payload, MANIFEST_PAYLOAD_TYPE, [key])
            out.append(
                ReleaseInfo(
                    name=name,
                    version=version,
                    platform="any",
                    artifact_filename=f"{name}.pyz",
                    artifact=artifact,
                    manifest=dsse.envelope_to_bytes(envelope),
                    custom={
                        "types": manifest["types"],
                        "requires": requires,
                        "description": manifest["description"],
                        "publisher": manifest["publisher"],
                        "publisher_key_id": key_id,
                    },
                )
            )
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def build(work: Path, layout: str, releases: list[ReleaseInfo]) -> tuple[Path, Result]:
    """An index repository of `releases` in `layout`, published; its timings."""
    bins = HASH_BINS if layout == "bins" else 0
    began = time.perf_counter()
    with IndexRepo.init(work / layout, passphrase=PASSPHRASE, hash_bins=bins) as repo:
        init_s = time.perf_counter() - began
        began = time.perf_counter()
        repo.add_releases(releases)
        add_s = time.perf_counter() - began
        began = time.perf_counter()
        result = repo.publish()
        publish_s = time.perf_counter() - began
        targets_bytes = (work / layout / "metadata" / "targets.json").stat().st_size
    published = work / layout / "published"
    return published, {
        "per_s": round(len(releases) / publish_s),
        "n": len(releases),
        "seconds": round(publish_s, 2),
        "init_s": round(init_s, 3),
        "add_s": round(add_s, 2),
        "roles_signed": len(result.signed),
        "metadata_files_written": result.metadata_written,
        "target_files_written": result.targets_written,
        "published_metadata_bytes": folder_bytes(published / "metadata"),
        "targets_json_bytes": targets_bytes,
        "note": f"{publish_s:.1f} s publish (+{add_s:.1f} s add)",
    }


def cold_install(url: str, root: bytes, cache: Path, name: str) -> Result:
    fetcher = RequestsFetcher()
    began = time.perf_counter()
    client = RegistryClient.bootstrap("bench", url, cache, root, fetcher=fetcher)
    found = client.find(name)
    metadata_bytes = fetcher.bytes_received
    metadata_files = [u.rsplit("/", 1)[-1] for u in fetcher.urls]
    newest = max(found, key=lambda r: tuple(int(p) for p in r.version.split(".")))
    client.download(newest.artifact, cache / "download")
    seconds = time.perf_counter() - began
    fetcher.close()
    return {
        "n": len(metadata_files),
        "seconds": round(seconds, 3),
        "metadata_bytes": metadata_bytes,
        "metadata_files": metadata_files,
        "artifact_bytes": newest.artifact.length,
        "note": f"{metadata_bytes:,} metadata bytes in {len(metadata_files)} requests;"
        f" {seconds:.2f} s with the download",
    }


def update_nothing_new(url: str, cache: Path, repeats: int) -> Result:
    samples: list[int] = []
    fetched: list[str] = []
    received = 0
    for i in range(repeats + 1):
        fetcher = RequestsFetcher()
        client = RegistryClient("bench", url, cache, fetcher=fetcher)
        began = time.perf_counter_ns()
        client.refresh()
        elapsed = time.perf_counter_ns() - began
        fetcher.close()
        if i:  # the first one warms up
            samples.append(elapsed)
            fetched = [u.rsplit("/", 1)[-1] for u in fetcher.urls]
            received = fetcher.bytes_received
    probes = [f for f in fetched if f.endswith(".root.json")]
    downloaded = [f for f in fetched if f not in probes]
    result = latency(samples)
    return result | {
        "requests": fetched,
        "metadata_files_downloaded": len(downloaded),
        "bytes": received,
        "note": f"fetches {', '.join(fetched)} ({received:,} bytes); the root probe is a 404",
    }


def throughput(work: Path, key: ed25519.PrivateKey) -> tuple[Result, Result]:
    """RegistryClient.download of a 100 MB artifact vs sha256sum on the same file."""
    artifact = work / "big.pyz"
    digest = hashlib.sha256()
    with open(artifact, "wb") as f:
        for _ in range(ARTIFACT_BYTES // 10**6):
            chunk = os.urandom(10**6)
            digest.update(chunk)
            f.write(chunk)
    sha = digest.hexdigest()
    release = dataclasses.replace(big_release(key), artifact=artifact)
    with IndexRepo.init(work / "big", passphrase=PASSPHRASE) as repo:
        repo.add_releases([release])
        repo.publish()
        root = repo.root_bytes(1)
    published = work / "big" / "published"
    served = next((published / "targets").rglob("*.big.pyz"))
    server = make_server(published, quiet=True)
    server.start_in_thread()
    try:
        client = RegistryClient.bootstrap("bench", server.url, work / "big-cache", root)
        info = client.find("big")[0].artifact
        dest = work / "big-download"

        def download() -> None:
            path = client.download(info, dest)
            path.unlink()

        def sha256sum() -> None:
            done = subprocess.run(
                ["sha256sum", str(served)], capture_output=True, text=True, check=True
            )
            if done.stdout.split()[0] != sha:
                raise RuntimeError(f"sha256sum disagrees: {done.stdout.strip()}")

        sides: dict[str, Callable[[], None]] = {"download": download, "sha256sum": sha256sum}
        best = {side: float("inf") for side in sides}
        for side in sides.values():
            side()  # warm the page cache and the connection
        for _ in range(VERIFY_REPEATS):
            for name, side in sides.items():
                began = time.perf_counter()
                side()
                best[name] = min(best[name], time.perf_counter() - began)
    finally:
        server.shutdown()
        server.server_close()
    size_mb = ARTIFACT_BYTES / MB
    ratio = best["sha256sum"] / best["download"]
    return (
        {
            "per_s": round(size_mb / best["download"]),
            "n": VERIFY_REPEATS,
            "seconds": round(best["download"], 3),
            "x_sha256sum": round(ratio, 2),
            "note": f"{ratio:.2f}x sha256sum's throughput",
        },
        {
            "per_s": round(size_mb / best["sha256sum"]),
            "n": VERIFY_REPEATS,
            "seconds": round(best["sha256sum"], 3),
        },
    )


def big_release(key: ed25519.PrivateKey) -> ReleaseInfo:
    """The release "big" 1.0.0 (its artifact is set to the 100 MB file by the caller; the
    manifest is a placeholder: the index does not read it, and nothing here verifies it)."""
    return ReleaseInfo(
        name="big",
        version="1.0.0",
        platform="any",
        artifact_filename="big.pyz",
        artifact=b"",
        manifest=dsse.envelope_to_bytes(dsse.sign(b"{}", MANIFEST_PAYLOAD_TYPE, [key])),
        custom={
            "types": ["decider"],
            "requires": {"host": [], "plugins": {}},
            "description": "100 MB throughput artifact",
            "publisher": "pm-plugins bench",
            "publisher_key_id": ed25519.key_id(key),
        },
    )


def measure() -> Report:
    use_this_python()
    began = time.perf_counter()
    report = Report(NAME, machine(loadavg_before=loadavg()))
    work = Path(tempfile.mkdtemp(prefix="pm-bench-registry-"))
    results: dict[str, Result] = {}
    try:
        key = ed25519.generate()
        log.info("making %d releases", PLUGIN_COUNT * len(VERSIONS))
        releases = make_releases(key)
        wanted = plugin_name(PLUGIN_COUNT // 2)
        for layout in ("flat", "bins"):
            log.info("building the %s index", layout)
            published, built = build(work, layout, releases)
            results[f"publish_{layout}"] = built
            with IndexRepo.open(work / layout) as repo:
                root = repo.root_bytes(1)
            server = make_server(published, quiet=True)
            server.start_in_thread()
            try:
                cache = work / f"{layout}-cache"
                results[f"cold_install_{layout}"] = cold_install(server.url, root, cache, wanted)
                results[f"update_{layout}"] = update_nothing_new(
                    server.url, cache, UPDATE_REPEATS[layout]
                )
            finally:
                server.shutdown()
                server.server_close()
            shutil.rmtree(work / layout, ignore_errors=True)
        log.info("download+verify throughput")
        download, sha256sum = throughput(work, key)
        results["download_verify_100mb"] = download
        results["sha256sum_100mb"] = sha256sum
    finally:
        shutil.rmtree(work, ignore_errors=True)

    flat = results["cold_install_flat"]["metadata_bytes"]
    bins = results["cold_install_bins"]["metadata_bytes"]
    pct = bins / flat * 100.0
    results["cold_install_bins"]["pct_of_flat"] = round(pct, 2)
    results["cold_install_bins"]["note"] += f"; {pct:.2f}% of flat"
    update = results["update_bins"]
    report.results = results
    report.targets = [
        at_most(
            "cold install metadata bytes, hash bins / flat", round(pct, 2), TARGET_BINS_PCT, "%"
        ),
        at_most(
            "update with nothing new, p50 (hash bins)",
            round(update["p50_us"] / 1000, 1),
            TARGET_UPDATE_MS,
            " ms",
        ),
        at_most(
            "update with nothing new: metadata files downloaded besides the root probe",
            update["metadata_files_downloaded"],
            TARGET_UPDATE_FILES,
        ),
        at_least(
            "download+verify throughput / sha256sum's, 100 MB",
            results["download_verify_100mb"]["x_sha256sum"],
            TARGET_VERIFY_RATIO,
            "x",
        ),
    ]
    report.notes = [
        f"{PLUGIN_COUNT:,} plugins x {len(VERSIONS)} versions = "
        f"{PLUGIN_COUNT * len(VERSIONS):,} releases: 2 targets per release (artifact, "
        "manifest) plus one releases.json per plugin.",
        "Cold install: metadata fetched by find(name) on a fresh cache (root v1 as anchor); "
        "bytes are response bodies (the 404 of the root probe counts 0).",
        f"update_flat re-verifies the cached {results['publish_flat']['targets_json_bytes']:,}"
        "-byte targets.json on every refresh (ngclient loads the trusted targets from the "
        "cache and checks its signature), which is what hash bins avoid.",
        f"update: median of {UPDATE_REPEATS['bins']} refreshes (bins), "
        f"{UPDATE_REPEATS['flat']} (flat), each with a new client on the warm cache.",
        f"Throughput: best of {VERIFY_REPEATS}, alternating, after one warm-up each.",
    ]
    return report.finish(began)


def main() -> Report:
    report = measure()
    print(write_report(report, DESCRIBE), end="", flush=True)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
