"""`pm-plugins index push` (and `publish --to`) against a real S3 server: versitygw.

The server is built from the Go module proxy and started once per session
(tests/s3_server.py); each test gets its own public-read bucket. Clients read the bucket
the way users do, with plain HTTP GETs through the TUF client; uploads can go through a
proxy that delays them, records their order, or fails and lies like a hostile server.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from index import IndexRepo, IndexRepoError, S3Location, push
from index.push import IMMUTABLE, REVALIDATE, make_client
from keys import ed25519
from keys.store import TrustStore
from loader.home import Home
from registry_client.registries import add_registry
from registry_client.registry_install import choose, install_from_index, open_clients
from registry_client.tuf_client import RegistryClient
from tests.conftest import EXAMPLES
from tests.s3_server import FaultyProxy, S3Server, build_versitygw
from tests.tuf_helpers import PASSPHRASE, release

_names = itertools.count(1)
#: The order a reader needs (the brief of issue 16), not imported from index.push.
PHASES = ("targets", "metadata", "snapshot", "root", "timestamp")


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        binary = build_versitygw()
        server = S3Server(binary, tmp_path_factory.mktemp("s3") / "root")
    except RuntimeError as e:
        pytest.fail(f"the S3 tests need versitygw: {e}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.public_bucket(f"idx-{os.getpid()}-{next(_names)}")


@pytest.fixture
def aws(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The standard AWS variables set for pushes made in this process."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    return s3


@pytest.fixture
def proxy(s3: S3Server) -> Iterator[FaultyProxy]:
    p = FaultyProxy(s3.port)
    yield p
    p.close()


@dataclass
class Index:
    path: Path
    publisher: Ed25519PrivateKey
    root: bytes

    @property
    def published(self) -> Path:
        return self.path / "published"

    def add(self, *releases: tuple[str, str]) -> None:
        """Add releases and publish, as a maintainer does between pushes."""
        with IndexRepo.open(self.path, passphrase=PASSPHRASE) as repo:
            repo.add_releases([release(n, v, self.publisher) for n, v in releases])
            repo.publish()

    def files(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.published).as_posix(): p.read_bytes()
            for p in self.published.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        }


@pytest.fixture
def index(tmp_path: Path) -> Index:
    publisher = ed25519.generate()
    with IndexRepo.init(tmp_path / "repo", passphrase=PASSPHRASE) as repo:
        root = repo.root_bytes(1)
    made = Index(tmp_path / "repo", publisher, root)
    made.add(("hosts", "1.0.0"), ("allowlist", "1.0.0"))
    return made


def url_of(s3: S3Server, bucket: str, prefix: str = "reg") -> str:
    return f"{s3.endpoint}/{bucket}/{prefix}"


def reader(s3: S3Server, bucket: str, index: Index, cache: Path) -> RegistryClient:
    return RegistryClient("s3", url_of(s3, bucket), cache, index.root)


def versions(client: RegistryClient, name: str) -> set[str]:
    client.refresh()
    return {r.version for r in client.find(name)}


def remote_bytes(s3: S3Server, bucket: str, key: str) -> bytes:
    data: bytes = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def install(home: Home, *requests: str) -> list[str]:
    lines: list[str] = []
    clients = open_clients(home, lines.append)
    chosen = choose(home, requests, clients, upgrade=False)
    install_from_index(
        home, chosen, clients, trust=TrustStore.load(home.trust_store), progress=lines.append
    )
    return lines


def user_home(path: Path, index: Index, url: str) -> Home:
    home = Home(path)
    home.ensure()
    store = TrustStore()
    store.trust(index.publisher.public_key(), "community", "test publisher")
    store.save(home.trust_store)
    add_registry(home, "s3", url, index.root)
    return home


# -- 1. publish, push, install: the user's path ------------------------------------------------


def cli(
    env: dict[str, str], home: Path, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--home", str(home), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def test_publish_to_a_bucket_then_install_from_its_url(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    env = {**os.environ, **s3.env(), "PM_PLUGINS_KEY_PASSPHRASE": "correct horse"}
    maint, user, repo = tmp_path / "maintainer", tmp_path / "user", tmp_path / "repo"
    cli(env, maint, "keys", "generate", "pub")
    for name in ("hosts", "allowlist"):
        cli(env, maint, "package", str(EXAMPLES / name), "--key", "pub", "--out", str(tmp_path))
    cli(env, maint, "index", "init", "--repo", str(repo))
    cli(env, maint, "index", "publishers", "add", "--repo", str(repo), "--key",
        str(maint / "keys" / "pub.pub"), "--plugins", "hosts,allowlist")  # fmt: skip
    cli(env, maint, "index", "add", "--repo", str(repo),
        str(tmp_path / "hosts-1.0.0"), str(tmp_path / "allowlist-1.0.0"))  # fmt: skip
    done = cli(env, maint, "index", "publish", "--repo", str(repo), "--to",
               f"s3://{bucket}/reg", "--endpoint-url", s3.endpoint, "--json")  # fmt: skip
    pushed = json.loads(done.stdout)["push"]
    assert pushed["skipped"] == 0 and pushed["uploaded"] == len(pushed["objects"]) > 6
    assert "uploaded 1 of" in done.stderr and f"uploaded {pushed['uploaded']} of" in done.stderr
    # the user: the bucket's plain HTTP URL and the root, out of band
    public_key = maint / "keys" / "pub.pub"
    cli(env, user, "keys", "trust", str(public_key), "--level", "community")
    root = repo / "published" / "metadata" / "root.json"
    cli(env, user, "registry", "add", "acme", url_of(s3, bucket), "--root", str(root))
    out = cli(env, user, "install", "hosts").stdout
    assert out.startswith("hosts 1.0.0: installed"), out
    assert (user / "plugins" / "hosts" / "1.0.0" / "plugin").is_file()
    # every object carries the cache headers a CDN needs
    client = s3.client()
    for key in pushed["objects"]:
        head = client.head_object(Bucket=bucket, Key=f"reg/{key}")
        mutable = key in ("metadata/timestamp.json", "metadata/root.json")
        assert head["CacheControl"] == (REVALIDATE if mutable else IMMUTABLE), key
        json_type = key.startswith("metadata/")
        assert head["ContentType"] == (
            "application/json" if json_type else "application/octet-stream"
        )
    with urllib.request.urlopen(f"{url_of(s3, bucket)}/metadata/timestamp.json") as answer:
        assert answer.headers["Cache-Control"] == "no-cache"


# -- 2. a second push uploads what changed, nothing else ---------------------------------------


def test_a_second_push_uploads_only_what_changed(
    s3: S3Server, bucket: str, index: Index, tmp_path: Path
) -> None:
    env = {**os.environ, **s3.env()}
    to = ["--to", f"s3://{bucket}/reg", "--endpoint-url", s3.endpoint]
    run = ["index", "push", "--repo", str(index.path), *to]
    first = json.loads(cli(env, tmp_path / "h", *run, "--json").stdout)
    assert first["uploaded"] == len(index.files()) and first["skipped"] == 0
    again = json.loads(cli(env, tmp_path / "h", *run, "--json").stdout)
    assert (again["uploaded"], again["skipped"], again["bytes"]) == (0, len(index.files()), 0)
    before = index.files()
    index.add(("hosts", "1.1.0"))
    after = index.files()
    changed = sorted(k for k in after if before.get(k) != after[k])
    dry = cli(env, tmp_path / "h", *run, "--dry-run")
    in_order = sorted(changed, key=lambda k: (PHASES.index(phase_of(k)), k))
    assert [ln.removeprefix("would upload ") for ln in dry.stdout.splitlines()[:-1]] == in_order
    assert "would upload" in dry.stdout.splitlines()[-1] and dry.stderr == ""
    client = reader(s3, bucket, index, tmp_path / "cache")
    assert versions(client, "hosts") == {"1.0.0"}  # a dry run uploads nothing
    third = json.loads(cli(env, tmp_path / "h", *run, "--json").stdout)
    assert sorted(third["objects"]) == changed
    assert third["skipped"] == len(after) - len(changed)
    assert third["bytes"] == sum(len(after[k]) for k in changed)
    assert "metadata/root.json" not in changed and "metadata/timestamp.json" in changed
    assert versions(client, "hosts") == {"1.0.0", "1.1.0"}


# -- 3. the order of uploads --------------------------------------------------------------------


def phase_of(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if "/targets/" in f"/{key}":
        return "targets"
    if name in ("timestamp.json", "root.json"):
        return name.removesuffix(".json")
    return "snapshot" if name.endswith(".snapshot.json") else "metadata"


def test_uploads_go_targets_then_metadata_then_snapshot_then_timestamp(
    aws: S3Server, bucket: str, index: Index, proxy: FaultyProxy
) -> None:
    index.add(("history", "1.0.0"), ("fail2lock", "2.0.0"))
    push(index.published, f"s3://{bucket}/reg", endpoint_url=proxy.endpoint, jobs=4)
    puts = proxy.puts()
    assert len(puts) == len(index.files())
    seen = [phase_of(p.key.removeprefix("reg/")) for p in sorted(puts, key=lambda p: p.started)]
    assert seen == sorted(seen, key=PHASES.index)
    for earlier, later in itertools.pairwise(PHASES):
        done = max(p.ended for p in puts if phase_of(p.key.removeprefix("reg/")) == earlier)
        started = min(p.started for p in puts if phase_of(p.key.removeprefix("reg/")) == later)
        assert done <= started, f"{later} began before every {earlier} upload had ended"
    assert seen[-1] == "timestamp" and seen.count("timestamp") == 1


# -- 4. a reader refreshing while a slow push runs -----------------------------------------------


def test_a_reader_refreshing_during_a_slow_push_never_fails(
    aws: S3Server, bucket: str, index: Index, proxy: FaultyProxy, tmp_path: Path
) -> None:
    push(index.published, f"s3://{bucket}/reg", endpoint_url=aws.endpoint)
    index.add(*[(f"p{i}", "1.0.0") for i in range(4)], ("hosts", "2.0.0"))
    client = reader(aws, bucket, index, tmp_path / "cache")
    problems: list[str] = []
    seen: list[set[str]] = []
    pushed = threading.Event()

    def read_in_a_loop() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client.refresh()
                found = client.find("hosts")
                newest = max(found, key=lambda r: r.version.split("."))
                client.download(newest.artifact, tmp_path / "dl" / str(len(seen)))
                seen.append({r.version for r in found})
            except Exception as e:
                problems.append(repr(e))
            if pushed.is_set() and seen and "2.0.0" in seen[-1]:
                return

    thread = threading.Thread(target=read_in_a_loop)
    thread.start()
    proxy.delay = 0.12  # per upload, one at a time: the push takes seconds
    try:
        push(index.published, f"s3://{bucket}/reg", endpoint_url=proxy.endpoint, jobs=1)
    finally:
        during = len(seen)
        pushed.set()
        thread.join()
    assert problems == []
    assert during >= 5, "the reader should have refreshed many times during the push"
    assert seen[0] == {"1.0.0"} and seen[-1] == {"1.0.0", "2.0.0"}
    assert all(s in ({"1.0.0"}, {"1.0.0", "2.0.0"}) for s in seen)


# -- 5. a failure in the middle ---------------------------------------------------------------


def test_a_failed_push_leaves_the_previous_index_installable(
    aws: S3Server, bucket: str, index: Index, proxy: FaultyProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    to = f"s3://{bucket}/reg"
    push(index.published, to, endpoint_url=aws.endpoint)
    old_timestamp = remote_bytes(aws, bucket, "reg/metadata/timestamp.json")
    index.add(("hosts", "2.0.0"))
    # the server fails the snapshot: nothing after it is uploaded
    proxy.fail = lambda method, key: 503 if method == "PUT" and "snapshot" in key else None
    with pytest.raises(IndexRepoError) as refused:
        push(index.published, to, endpoint_url=proxy.endpoint)
    message = str(refused.value)
    assert message.startswith(f"uploading {to}/metadata/2.snapshot.json failed: the server")
    assert "503" in message and "readers still see the previous index" in message
    assert "\n" not in message
    assert not any(phase_of(p.key) in ("root", "timestamp") for p in proxy.puts())
    assert remote_bytes(aws, bucket, "reg/metadata/timestamp.json") == old_timestamp
    # credentials revoked: refused at the listing, nothing uploaded
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(IndexRepoError, match=rf"^listing {to} failed: the server answered 403"):
        push(index.published, to, endpoint_url=aws.endpoint)
    # the users still install the previous release, and see nothing of the new one
    home = user_home(tmp_path / "home", index, url_of(aws, bucket))
    assert any("hosts 1.0.0" in line for line in install(home, "hosts")), "old release"
    assert versions(reader(aws, bucket, index, tmp_path / "c2"), "hosts") == {"1.0.0"}
    # once the server works again, the next push completes the new index
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws.secret_key)
    push(index.published, to, endpoint_url=aws.endpoint)
    assert versions(reader(aws, bucket, index, tmp_path / "c3"), "hosts") == {"1.0.0", "2.0.0"}


# -- 6. what --to accepts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "bucket/prefix",
        "https://bucket/prefix",
        "s3://",
        "s3:///prefix",
        "s3://Bucket_Name/x",
        "s3://ab/x",
        "s3://bucket/a/../b",
        "s3://bucket/..",
        "s3://bucket/a//b",
        "s3://bucket/a b",
        "s3://bucket/a%2Fb",
        "s3://bucket/x?versionId=1",
        "s3://bucket/x#y",
        "s3://user@bucket/x",
        "s3://bucket:9000/x",
        "s3://bucket/a\nb",
    ],
)
def test_a_malformed_s3_url_is_one_sentence(url: str) -> None:
    with pytest.raises(IndexRepoError) as refused:
        S3Location.parse(url)
    message = str(refused.value)
    assert "is not an s3://BUCKET/PREFIX URL" in message and "\n" not in message


def test_good_s3_urls_and_the_cli_refusal(tmp_path: Path) -> None:
    assert S3Location.parse("s3://my.bucket-1") == S3Location("my.bucket-1", "")
    assert S3Location.parse("s3://b12/a/b.c_d~e/") == S3Location("b12", "a/b.c_d~e")
    assert S3Location("b12", "a").key("metadata/x") == "a/metadata/x"
    done = cli(dict(os.environ), tmp_path / "h", "index", "push", "--repo", str(tmp_path),
               "--to", "s3://bucket/../etc", ok=False)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        'Error: "s3://bucket/../etc" is not an s3://BUCKET/PREFIX URL (each part of the prefix'
        " is A-Z, a-z, 0-9, '.', '_', '~' or '-', not empty, '.' or '..')"
    ]


# -- a hostile network path, server or folder --------------------------------------------------


def test_a_server_failing_only_the_timestamp_keeps_the_previous_index(
    aws: S3Server, bucket: str, index: Index, proxy: FaultyProxy, tmp_path: Path
) -> None:
    to = f"s3://{bucket}/reg"
    push(index.published, to, endpoint_url=aws.endpoint)
    old_timestamp = remote_bytes(aws, bucket, "reg/metadata/timestamp.json")
    index.add(("hosts", "2.0.0"))
    proxy.fail = lambda method, key: 500 if method == "PUT" and "timestamp" in key else None
    for said in ("disk full\r\nX-Injected: yes\t" + "!" * 500, "disk\x1b[31m full"):
        proxy.fail_message = said  # a long, multi-line answer; one with a terminal escape
        with pytest.raises(IndexRepoError) as refused:
            push(index.published, to, endpoint_url=proxy.endpoint)
        message = str(refused.value)
        assert message.startswith(f"uploading {to}/metadata/timestamp.json failed: the server")
        assert message.endswith("the bucket has its previous timestamp.json, so readers still"
                                " see the previous index")  # fmt: skip
        assert message.isprintable() and len(message) < 400
    assert remote_bytes(aws, bucket, "reg/metadata/timestamp.json") == old_timestamp
    assert versions(reader(aws, bucket, index, tmp_path / "c"), "hosts") == {"1.0.0"}
    proxy.fail = lambda method, key: None
    again = push(index.published, to, endpoint_url=proxy.endpoint)
    assert again.uploaded == ["metadata/timestamp.json"]  # the rest was there already
    assert versions(reader(aws, bucket, index, tmp_path / "c2"), "hosts") == {"1.0.0", "2.0.0"}


def test_bytes_changed_on_the_way_or_a_lying_etag_stop_the_push(
    aws: S3Server, bucket: str, index: Index, proxy: FaultyProxy
) -> None:
    to = f"s3://{bucket}/reg"

    def flip(method: str, key: str, body: bytes) -> bytes:
        return body[:-1] + bytes([body[-1] ^ 1]) if key.endswith(".hosts.pyz") else body

    proxy.tamper = flip
    with pytest.raises(IndexRepoError, match=r"^uploading .*\.hosts\.pyz failed: the server answ"):
        push(index.published, to, endpoint_url=proxy.endpoint)
    proxy.tamper = lambda method, key, body: body
    proxy.fake_etag = {"reg/metadata/1.targets.json"}
    with pytest.raises(IndexRepoError, match=r"1\.targets\.json failed: the server stored other"):
        push(index.published, to, endpoint_url=proxy.endpoint)
    assert {phase_of(p.key) for p in proxy.puts()} == {"targets", "metadata"}


def test_a_local_version_with_a_plus_is_reachable_by_its_plain_url(
    aws: S3Server, bucket: str, index: Index, tmp_path: Path
) -> None:
    index.add(("hosts", "1.1.0+local.2"))
    result = push(index.published, f"s3://{bucket}/reg", endpoint_url=aws.endpoint)
    plus = [k for k in result.uploaded if "+" in k]
    assert len(plus) == 2  # the artifact and its manifest
    assert all(k.replace("+", " ") in result.uploaded for k in plus)  # Amazon's reading of +
    client = reader(aws, bucket, index, tmp_path / "c")
    client.refresh()
    (local,) = [r for r in client.find("hosts") if "+" in r.version]
    assert (
        client.download(local.artifact, tmp_path / "dl").read_bytes() == b"hosts 1.1.0+local.2 any"
    )


def test_odd_files_in_the_published_folder_are_refused_before_any_upload(
    aws: S3Server, bucket: str, index: Index, tmp_path: Path
) -> None:
    targets, meta = index.published / "targets", index.published / "metadata"
    odd = [targets / "hosts" / "a b", targets / "hosts" / "x\x1by", meta / "notes.txt"]
    outside = tmp_path / "secret"
    outside.write_text("not for the bucket")
    for path in [*odd, targets / "link"]:
        if path.name == "link":
            path.symlink_to(outside)
        else:
            path.write_text("odd")
        with pytest.raises(IndexRepoError, match="refusing to push") as refused:
            push(index.published, f"s3://{bucket}/reg", endpoint_url=aws.endpoint)
        assert str(refused.value).isprintable()
        path.unlink()
    assert aws.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_bucket_ahead_of_the_folder_is_not_rolled_back(
    aws: S3Server, bucket: str, index: Index, tmp_path: Path
) -> None:
    to = f"s3://{bucket}/reg"
    stale = tmp_path / "stale"
    shutil.copytree(index.published, stale)
    with IndexRepo.open(index.path, passphrase=PASSPHRASE) as repo:
        repo.timestamp()  # version 2, e.g. from another maintainer's cron
    push(index.published, to, endpoint_url=aws.endpoint)
    with pytest.raises(IndexRepoError, match=r"timestamp.json is version 2, not older than this"):
        push(stale, to, endpoint_url=aws.endpoint)
    ts = json.loads(remote_bytes(aws, bucket, "reg/metadata/timestamp.json"))
    assert ts["signed"]["version"] == 2
    # a timestamp our keys did not sign blocks nothing: no reader could have trusted it
    forged = {**ts, "signed": {**ts["signed"], "version": 99}}
    key = "reg/metadata/timestamp.json"
    aws.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(forged).encode())
    assert push(stale, to, endpoint_url=aws.endpoint).uploaded == ["metadata/timestamp.json"]
    assert remote_bytes(aws, bucket, key) == (stale / "metadata" / "timestamp.json").read_bytes()


def test_another_index_under_the_same_prefix_is_not_overwritten(
    aws: S3Server, bucket: str, index: Index, proxy: FaultyProxy, tmp_path: Path
) -> None:
    to = f"s3://{bucket}/reg"
    with IndexRepo.init(tmp_path / "other", passphrase=PASSPHRASE) as other:
        other.add_releases([release("hosts", "9.0.0", index.publisher)])
        other.publish()
        push(other.published_dir, to, endpoint_url=aws.endpoint)
    theirs = remote_bytes(aws, bucket, "reg/metadata/timestamp.json")
    with pytest.raises(IndexRepoError, match=r"1\.root\.json already holds different content"):
        push(index.published, to, endpoint_url=proxy.endpoint)
    assert proxy.puts() == []
    assert remote_bytes(aws, bucket, "reg/metadata/timestamp.json") == theirs


def test_a_listing_that_never_ends_is_cut_short(
    aws: S3Server, bucket: str, index: Index, proxy: FaultyProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["index.push"], "_MAX_PAGES", 5)  # `index.push` is the function
    proxy.endless_listing = True
    result = push(index.published, f"s3://{bucket}/reg", endpoint_url=proxy.endpoint)
    listings = [s for s in proxy.seen if s.method == "GET" and not s.key]
    assert len(listings) == 5 and len(result.uploaded) == len(index.files())


@pytest.mark.parametrize(
    "endpoint",
    ["ftp://x", "http://user:secret@host", "http://exa mple", "http://[::1", "http://h:x"],
)
def test_a_malformed_endpoint_is_one_sentence(endpoint: str) -> None:
    with pytest.raises(IndexRepoError, match=r"^--endpoint-url .* is not like http://HOST:PORT$"):
        make_client(endpoint)


def test_no_credentials_is_one_sentence(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask off this machine
    with pytest.raises(IndexRepoError) as refused:
        push(index.published, "s3://bucket/reg", endpoint_url="http://127.0.0.1:9")
    assert str(refused.value) == (
        "listing s3://bucket/reg failed: no S3 credentials were found (set AWS_ACCESS_KEY_ID"
        " and AWS_SECRET_ACCESS_KEY)"
    )
