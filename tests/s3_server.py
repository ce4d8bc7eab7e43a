"""A real S3 server for tests/test_index_s3.py: versitygw, built from the Go module proxy.

Why it exists: `pm-plugins index push` must be tested against a real S3 implementation
(request signing, ETags, metadata, bucket policies, anonymous GETs), not a mock.
versitygw (Apache-2.0) is an S3 gateway written in Go whose `posix` backend stores each
bucket as a folder; `build_versitygw()` runs `go install` of a pinned release into
tests/interop/go/bin/s3/ once (cached; a file lock makes concurrent runs build it once).
`S3Server` starts it on 127.0.0.1 with a random port and random root credentials.

`FaultyProxy` sits between the pusher and the server, forwarding every request as it came
(so SigV4 signatures still match): it records each request's start and end, and can delay
uploads, answer an error for chosen keys, or lie about what was stored, as a hostile
network path or server would.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.interop.gobuild import BIN_DIR, _go_env, _locked, _run, go_available

# The newest release the Go module proxy lists (go list -m -versions); it needs Go >= 1.25.
VERSITYGW = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"
S3_BIN = BIN_DIR / "s3"


def build_versitygw() -> Path:
    """The versitygw executable, built with the machine's `go` if not built yet.

    Raises RuntimeError saying why when Go is missing or the build fails.
    """
    if not go_available():
        raise RuntimeError(
            "the Go toolchain ('go') is not on PATH; the S3 tests build versitygw with it"
        )
    binary, stamp = S3_BIN / "versitygw", S3_BIN / "versitygw.version"
    S3_BIN.mkdir(parents=True, exist_ok=True)
    with _locked(S3_BIN / ".lock"):
        if not (binary.is_file() and stamp.is_file() and stamp.read_text() == VERSITYGW):
            env = {**_go_env(), "GOBIN": str(S3_BIN), "GOFLAGS": "-mod=mod"}
            _run(["go", "install", VERSITYGW], cwd=S3_BIN, env=env)
            if not binary.is_file():
                raise RuntimeError(f"go install {VERSITYGW} did not produce {binary}")
            stamp.write_text(VERSITYGW)
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class S3Server:
    """versitygw's posix backend on ``root``, on 127.0.0.1; ``stop()`` ends it."""

    def __init__(self, binary: Path, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.access_key = "test" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.log = root.parent / "versitygw.log"
        for _ in range(3):  # a port taken between free_port() and the bind: try another
            self.port = free_port()
            with self.log.open("wb") as log:
                self.proc = subprocess.Popen(
                    [str(binary), "--port", f"127.0.0.1:{self.port}", "--access",
                     self.access_key, "--secret", self.secret_key, "--quiet", "posix",
                     str(root)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            if wait_for_port(self.port, self.proc):
                return
            self.stop()
        raise RuntimeError(f"versitygw did not start: {self.log.read_text()[-2000:]}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a pusher reads, isolated from the machine's own."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask a metadata service off-host
        }

    def client(self, endpoint: str | None = None, *, secret: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret or self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def public_bucket(self, name: str) -> str:
        """Create bucket ``name`` readable by anyone (a plain HTTP GET), as a registry is."""
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{name}/*"],
                }
            ],
        }
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- a proxy that can misbehave ----------------------------------------------------------------


@dataclass
class Seen:
    method: str
    key: str  # the object key (bucket stripped), "" for bucket-level requests
    started: float
    ended: float
    status: int


class FaultyProxy:
    """Forwards to ``upstream`` (host:port) on its own 127.0.0.1 port.

    ``delay``: seconds to wait before forwarding each PUT; ``fail(method, key)`` returns a
    status to answer instead of forwarding (with an S3 error whose message is
    ``fail_message``), or None; ``tamper(method, key, body)`` may change a PUT's body on the
    way; ``fake_etag``: keys whose PUT answer carries another ETag; ``endless_listing``:
    every bucket listing answers an empty page that says more follow.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen: list[Seen] = []
        self.delay = 0.0
        self.fail: Callable[[str, str], int | None] = lambda method, key: None
        self.fail_message = "injected failure"
        self.tamper: Callable[[str, str, bytes], bytes] = lambda method, key, body: body
        self.fake_etag: set[str] = set()
        self.endless_listing = False
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def puts(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == "PUT" and s.key]

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        path = urlsplit(req.path).path
        key = unquote(path.lstrip("/").partition("/")[2])
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        if req.command == "PUT" and key:
            time.sleep(self.delay)
            body = self.tamper(req.command, key, body)
        status = self.fail(req.command, key)
        if self.endless_listing and req.command == "GET" and not key and "list-type=2" in req.path:
            status = self._answer_more(req)
        elif status is not None:
            self._answer_error(req, status)
        else:
            status = self._forward(req, body, key)
        with self.lock:
            self.seen.append(Seen(req.command, key, started, time.monotonic(), status))

    def _answer_more(self, req: BaseHTTPRequestHandler) -> int:
        data = (
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult'
            ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><KeyCount>0</KeyCount>'
            f"<IsTruncated>true</IsTruncated><NextContinuationToken>t{len(self.seen)}"
            "</NextContinuationToken></ListBucketResult>"
        ).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/xml")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)
        return 200

    def _answer_error(self, req: BaseHTTPRequestHandler, status: int) -> None:
        data = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
            f"<Message>{self.fail_message}</Message></Error>"
        ).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/xml")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes, key: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            conn.putrequest(req.command, req.path, skip_host=True, skip_accept_encoding=True)
            for name, value in req.headers.items():
                if name.lower() not in ("connection", "content-length", "expect"):
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            answer = conn.getresponse()
            data = answer.read()
            req.send_response(answer.status)
            for name, value in answer.getheaders():
                length_of_head = req.command == "HEAD" and name.lower() == "content-length"
                hop = name.lower() in ("connection", "transfer-encoding", "content-length")
                if hop and not length_of_head:
                    continue
                if name.lower() == "etag" and key in self.fake_etag:
                    value = '"' + "0" * 32 + '"'
                req.send_header(name, value)
            if req.command != "HEAD":
                req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            if req.command != "HEAD":
                req.wfile.write(data)
            return answer.status
        finally:
            conn.close()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
