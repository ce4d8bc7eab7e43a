"""What a request must show before the dashboard serves it, and the headers every answer has.

Why this exists: the dashboard drives the booted host with its owner's rights (it disables
modules, answers notifications, installs plugins), so it must answer its owner's browser tab
and nothing else: not a page of another origin (CSRF), not another site whose name now points
at 127.0.0.1 (DNS rebinding), not another user of this machine who can reach the loopback
port. Each check is explicit here, in this order, and each refusal is one sentence:

1. the Host header is exactly `127.0.0.1:PORT` or `localhost:PORT` (421 otherwise): a page of
   another site that rebinds its name to 127.0.0.1 still sends its own name;
2. the token the command printed (32 random bytes), in the `token` query parameter or the
   `X-PM-Token` header, compared in constant time (403 otherwise). It lives in the page's
   URL and in the page's memory, never in a cookie: cookies are not kept apart by port, so
   any other server on 127.0.0.1 would receive one;
3. the browser's `Sec-Fetch-Site`, when sent, says the request comes from this origin (or,
   for the page itself, from the user typing or opening the URL) (403 otherwise);
4. a state-changing request is a POST with `Content-Type: application/json`, an `Origin` (when
   sent) that is this server's, the `X-PM-CSRF` value the page was given, and a body of at
   most 64 KiB with a Content-Length (403, 411, 413 or 415 otherwise). A form or a `no-cors`
   fetch of another origin can send none of these headers without a CORS preflight, and
   the dashboard answers no preflight and sends no CORS header.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message

__all__ = ["CSRF_HEADER", "MAX_BODY", "SECURITY_HEADERS", "TOKEN_HEADER", "Guard", "Refusal"]

#: Nothing but this server's own files: no inline script or style, no other origin, no form
#: posts, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
TOKEN_HEADER = "X-PM-Token"
CSRF_HEADER = "X-PM-CSRF"
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Refusal:
    """Why a request is not served: the HTTP status and one sentence."""

    status: int
    reason: str


class Guard:
    """The secrets of one dashboard run and the checks above, for the server on `port`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.token = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(32)
        self.hosts = (f"127.0.0.1:{port}", f"localhost:{port}")
        self.origins = tuple(f"http://{h}" for h in self.hosts)

    @property
    def url(self) -> str:
        """What the command prints: the page, with the token."""
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def check(
        self, method: str, headers: Message, query_token: Sequence[str], *, page: bool = False
    ) -> Refusal | None:
        """None when the request may be served; `page`: the request for the page itself."""
        hosts = headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0] not in self.hosts:
            return Refusal(421, f"this server answers only as {self.hosts[0]}")
        given = headers.get_all(TOKEN_HEADER) or list(query_token)
        if len(given) != 1 or not _same(given[0], self.token):
            return Refusal(403, "open the address `pm-plugins dashboard` printed (its token)")
        site = headers.get("Sec-Fetch-Site")
        allowed = ("same-origin", "none") if page else ("same-origin",)
        if site is not None and site not in allowed:
            return Refusal(403, "requests from other sites are refused")
        if method == "POST":
            return self._check_post(headers)
        return None

    def _check_post(self, headers: Message) -> Refusal | None:
        origin = headers.get_all("Origin")
        if origin is not None and (len(origin) != 1 or origin[0] not in self.origins):
            return Refusal(403, "requests from other origins are refused")
        csrf = headers.get_all(CSRF_HEADER) or []
        if len(csrf) != 1 or not _same(csrf[0], self.csrf):
            return Refusal(403, f"a change needs the page's {CSRF_HEADER} header")
        if headers.get_content_type() != "application/json" or "Content-Type" not in headers:
            return Refusal(415, "a change is a JSON body (Content-Type: application/json)")
        if "Transfer-Encoding" in headers:
            return Refusal(411, "a change needs a Content-Length")
        length = headers.get("Content-Length", "")
        if not length.isdigit():
            return Refusal(411, "a change needs a Content-Length")
        if int(length) > MAX_BODY:
            return Refusal(413, f"a change is at most {MAX_BODY} bytes")
        return None


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison (bytes, so any text compares without raising)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())
