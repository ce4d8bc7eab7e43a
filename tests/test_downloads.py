"""Bounded downloads (registry_client.downloads, registry_client.fetchers) against a real
HTTP server on 127.0.0.1 that misbehaves on purpose, over a real signed TUF index.

Each attack fails closed: a trickle is refused at its deadline, a huge declared length
before any byte, more bytes than signed are never written, an interrupt leaves nothing,
and a dropped download resumes with a Range whose result still verifies as a whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from index import IndexRepo
from keys import ed25519
from keys.store import TrustStore
from loader.home import Home
from registry_client.downloads import MAX_AGE, PARTIALS, Cap, WorkArea
from registry_client.fetchers import DEADLINE_FLOOR, MIN_RATE, RequestsFetcher
from registry_client.registries import add_registry
from registry_client.registry_install import BarFactory, choose, install_from_index, open_clients
from registry_client.tuf_client import RegistryClient, RegistryError
from tests.tuf_helpers import PASSPHRASE, forge_release, load, release

ARTIFACT = bytes(range(256)) * 1024  # 256 KiB
SHA256 = hashlib.sha256(ARTIFACT).hexdigest()
SERVED = f"/targets/hosts/1.0.0/any/{SHA256}.hosts.pyz"
ROOT = Path(__file__).resolve().parent.parent


class Hostile:
    """Serves a published index on 127.0.0.1 with Range support, and misbehaves per path:
    `trickle` (seconds between single bytes), `drop_after` (bytes sent before hanging up,
    once), `ignore_ranges` (answer 200), `bad_range` (a 206 one byte off). Every GET is
    recorded as (path, Range header)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gets: list[tuple[str, str | None]] = []
        self.trickle: dict[str, float] = {}
        self.drop_after: dict[str, int] = {}
        self.ignore_ranges = False
        self.bad_range = False
        self.stopping = threading.Event()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                state.answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        path = unquote(urlsplit(h.path).path)
        asked = h.headers.get("Range")
        self.gets.append((path, asked))
        file = self.root / path.lstrip("/")
        if ".." in path or not file.is_file():
            h.send_error(404)
            return
        data = file.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", asked or "")
        start = int(match.group(1)) if match and not self.ignore_ranges else 0
        h.send_response(206 if start else 200)
        if start:
            first = start + 1 if self.bad_range else start
            h.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(h, path, data[start:])

    def _send(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        if path in self.drop_after:
            h.wfile.write(body[: self.drop_after.pop(path)])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)  # hang up mid-way
            h.close_connection = True
        elif path in self.trickle:
            for i in range(len(body)):
                if self.stopping.is_set():
                    return
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
                time.sleep(self.trickle[path])
        else:
            h.wfile.write(body)

    def artifact_gets(self) -> list[str | None]:
        return [asked for path, asked in self.gets if path == SERVED]

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def publisher() -> ed25519.Ed25519PrivateKey:
    return ed25519.generate()


@pytest.fixture
def repo(tmp_path: Path, publisher: ed25519.Ed25519PrivateKey) -> Iterator[IndexRepo]:
    with IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE) as r:
        r.add_releases([release("hosts", "1.0.0", publisher, artifact=ARTIFACT)])
        r.publish()
        yield r


@pytest.fixture
def hostile(repo: IndexRepo) -> Iterator[Hostile]:
    server = Hostile(repo.published_dir)
    yield server
    server.close()


@pytest.fixture
def home(tmp_path: Path, repo: IndexRepo, hostile: Hostile, publisher: Any) -> Home:
    home = Home(tmp_path / "home")
    home.ensure()
    store = TrustStore()
    store.trust(publisher.public_key(), "community", "test publisher")
    store.save(home.trust_store)
    add_registry(home, "test", hostile.url, repo.root_bytes())
    return home


def install(home: Home, *requests: str, bar: BarFactory | None = None) -> None:
    """`pm-plugins install` through the library, as the CLI does."""
    clients = open_clients(home, lambda _: None)
    chosen = choose(home, requests, clients)
    trust = TrustStore.load(home.trust_store)
    install_from_index(home, chosen, clients, trust=trust, progress=lambda _: None, bar=bar)


def work_area(home: Home) -> list[str]:
    """Everything downloads put in the state root (run folders, partials, part files)."""
    found = [str(p.relative_to(home.root)) for p in home.root.rglob(".download-*")]
    return sorted(found + [str(p.relative_to(home.root)) for p in home.root.rglob("*.part")])


def slow_client(repo: IndexRepo, hostile: Hostile, cache: Path, floor: float) -> RegistryClient:
    fetcher = RequestsFetcher(retries=0, deadline_floor=floor, min_rate=1 << 30)
    return RegistryClient.bootstrap("demo", hostile.url, cache, repo.root_bytes(1), fetcher=fetcher)


# -- a deadline per file ---------------------------------------------------------------------


def test_the_deadline_is_a_floor_plus_the_length_at_a_minimum_rate() -> None:
    assert (DEADLINE_FLOOR, MIN_RATE) == (60.0, 64 << 10)
    fetcher = RequestsFetcher()
    assert fetcher.deadline(0) == 60.0
    assert fetcher.deadline(60 * MIN_RATE) == 120.0  # 3.75 MiB: one more minute
    assert RequestsFetcher(deadline_floor=1, min_rate=10).deadline(25) == 3.5


def test_a_trickling_target_is_refused_at_its_deadline(repo, hostile, tmp_path: Path) -> None:
    client = slow_client(repo, hostile, tmp_path / "cache", floor=0.5)
    artifact = client.find("hosts")[0].artifact
    hostile.trickle[SERVED] = 0.01  # 256 KiB at 100 B/s: 45 minutes, each read in time
    began = time.monotonic()
    with pytest.raises(RegistryError) as info:
        client.download(artifact, tmp_path / "dl")
    assert time.monotonic() - began < 3
    message = str(info.value)
    assert re.fullmatch(
        r"registry demo: downloading hosts/1\.0\.0/any/hosts\.pyz: the server is too slow"
        rf" \(http://127\.0\.0\.1:\d+{re.escape(SERVED)} did not arrive within its deadline"
        r" of 0\.5 s\)",
        message,
    ), message
    assert list((tmp_path / "dl").iterdir()) == []


def test_trickling_metadata_is_refused_at_its_deadline(repo, hostile, tmp_path: Path) -> None:
    hostile.trickle["/metadata/timestamp.json"] = 0.01
    began = time.monotonic()
    with pytest.raises(RegistryError, match=r"too slow \(.*/metadata/timestamp\.json did not"):
        slow_client(repo, hostile, tmp_path / "cache", floor=0.5).refresh()
    assert time.monotonic() - began < 3


# -- the declared length ---------------------------------------------------------------------


def declare(repo: IndexRepo, length: int) -> None:
    """A holder of the targets key signs a new length for hosts 1.0.0's artifact."""
    pub = repo.published_dir
    md = load(pub, f"{repo.role_version('targets')}.targets.json")
    md.signed.targets["hosts/1.0.0/any/hosts.pyz"].length = length
    listing = md.signed.targets["hosts/releases.json"].custom
    listing["releases"][0]["artifact"]["length"] = length
    md.signed.version += 1
    forge_release(repo, pub, {"targets": (md, repo.role_signers("targets"))})


def test_a_huge_declared_length_is_refused_before_any_byte(repo, hostile, home: Home) -> None:
    declare(repo, 1_600_000_000)
    with pytest.raises(RegistryError) as info:
        install(home, "hosts")
    assert str(info.value) == (
        "registry test: hosts/1.0.0/any/hosts.pyz declares 1.49 GiB, more than the"
        " 512 MiB a plugin artifact may have"
    )
    assert hostile.artifact_gets() == []  # not even the headers were asked for
    assert not any(path.startswith("/targets/") for path, _ in hostile.gets)
    assert work_area(home) == []


def test_a_cap_is_a_parameter_of_the_download(repo, hostile, tmp_path: Path) -> None:
    client = RegistryClient.bootstrap("demo", hostile.url, tmp_path / "c", repo.root_bytes(1))
    found = client.find("hosts")[0]
    with pytest.raises(RegistryError, match="declares 256 KiB, more than the 1 KiB a test"):
        client.download(found.artifact, tmp_path / "dl", cap=Cap(1024, "a test"))
    assert not (tmp_path / "dl").exists() and hostile.artifact_gets() == []


def test_more_bytes_than_signed_are_never_written(repo, hostile, home: Home) -> None:
    (repo.published_dir / SERVED.lstrip("/")).write_bytes(ARTIFACT + b"x" * 100_000)
    seen: list[int] = []

    @contextlib.contextmanager
    def bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
        yield seen.append

    with pytest.raises(RegistryError, match="sent more bytes than the signed metadata allows"):
        install(home, "hosts", bar=bar)
    assert sum(seen) <= len(ARTIFACT)
    assert work_area(home) == []  # not kept for a resume either


# -- no leftovers ----------------------------------------------------------------------------


def interrupt(n: int) -> None:
    raise KeyboardInterrupt  # Ctrl-C after the first chunk


def test_an_interrupt_mid_way_leaves_nothing(repo, hostile, home: Home, tmp_path: Path) -> None:
    @contextlib.contextmanager
    def bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
        yield interrupt

    with pytest.raises(KeyboardInterrupt):
        install(home, "hosts", bar=bar)
    assert hostile.artifact_gets() == [None]
    assert work_area(home) == []  # no run folder, no partial: the user wants nothing left
    client = RegistryClient.bootstrap("demo", hostile.url, tmp_path / "c", repo.root_bytes(1))
    with pytest.raises(KeyboardInterrupt):
        client.download(client.find("hosts")[0].artifact, tmp_path / "dl", on_bytes=interrupt)
    assert list((tmp_path / "dl").iterdir()) == []  # no .hosts.pyz.*.part


def test_what_a_killed_run_left_is_swept(repo, hostile, home: Home) -> None:
    code = (
        "import sys, time; from pathlib import Path; from loader.home import Home;"
        " from registry_client.downloads import WorkArea;"
        " w = WorkArea(Home(Path(sys.argv[1]))); (w.path / 'hosts.pyz').write_bytes(b'half');"
        " print(w.path, flush=True); time.sleep(60)"
    )
    killed = subprocess.Popen(
        [sys.executable, "-c", code, str(home.root)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert killed.stdout is not None
    dead = Path(killed.stdout.readline().strip())
    assert dead.parent == home.root and dead.name.startswith(".download-")
    os.kill(killed.pid, signal.SIGKILL)  # no finally runs
    killed.wait()
    killed.stdout.close()
    partials = home.root / PARTIALS
    partials.mkdir()
    old, fresh = partials / f"{'a' * 64}.part", partials / f"{'b' * 64}.part"
    old.write_bytes(b"old")
    fresh.write_bytes(b"fresh")
    os.utime(old, (time.time() - MAX_AGE - 60,) * 2)
    live = home.root / ".download-live"  # another run, still downloading: it holds its lock
    live.mkdir()
    held = os.open(live / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert dead.is_dir()
        install(home, "hosts")
        assert not dead.exists() and not old.exists()
        assert live.is_dir() and fresh.exists()
    finally:
        os.close(held)
    assert (home.release_dir("hosts", "1.0.0") / "hosts.pyz").read_bytes() == ARTIFACT
    with WorkArea(home):  # the next run: the other one has finished (or died) by now
        assert not live.exists()
    assert work_area(home) == [PARTIALS, f"{PARTIALS}/{fresh.name}"]


# -- resume ----------------------------------------------------------------------------------


def test_a_dropped_download_resumes_with_a_range(repo, hostile, home: Home) -> None:
    hostile.drop_after[SERVED] = 100_000
    with pytest.raises(RegistryError) as info:
        install(home, "hosts")
    assert str(info.value).startswith("registry test: downloading hosts/1.0.0/any/hosts.pyz:")
    assert str(info.value).endswith(f"{SERVED} (the connection broke mid-way)")
    assert work_area(home) == [PARTIALS, f"{PARTIALS}/{SHA256}.part"]  # only the resumable part
    assert (home.root / PARTIALS / f"{SHA256}.part").stat().st_size == 100_000
    install(home, "hosts")
    assert hostile.artifact_gets() == [None, "bytes=100000-"]
    assert (home.release_dir("hosts", "1.0.0") / "hosts.pyz").read_bytes() == ARTIFACT
    assert work_area(home) == []


def test_a_server_ignoring_the_range_sends_it_all_again(repo, hostile, home: Home) -> None:
    hostile.drop_after[SERVED] = 100_000
    with pytest.raises(RegistryError):
        install(home, "hosts")
    hostile.ignore_ranges = True
    install(home, "hosts")
    assert hostile.artifact_gets() == [None, "bytes=100000-"]
    assert (home.release_dir("hosts", "1.0.0") / "hosts.pyz").read_bytes() == ARTIFACT
    assert work_area(home) == []


def test_a_poisoned_partial_fails_the_hash_and_is_discarded(repo, hostile, home: Home) -> None:
    hostile.drop_after[SERVED] = 100_000
    with pytest.raises(RegistryError):
        install(home, "hosts")
    part = home.root / PARTIALS / f"{SHA256}.part"
    part.write_bytes(b"evil" + part.read_bytes()[4:])  # same length, other bytes
    with pytest.raises(RegistryError, match="do not match their signed length and hash"):
        install(home, "hosts")  # the hash covers the resumed part from its first byte
    assert work_area(home) == []
    install(home, "hosts")  # and the next attempt starts over
    assert hostile.artifact_gets() == [None, "bytes=100000-", None]


def test_a_range_answered_with_another_range_is_refused(repo, hostile, home: Home) -> None:
    hostile.drop_after[SERVED] = 100_000
    with pytest.raises(RegistryError):
        install(home, "hosts")
    hostile.bad_range = True
    with pytest.raises(RegistryError, match=r"answered the range 'bytes 100001-262143/262144'"):
        install(home, "hosts")
    assert work_area(home) == []
