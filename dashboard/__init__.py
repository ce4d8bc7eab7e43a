"""The host's local web face: a page on 127.0.0.1 that shows and drives the booted host.

Why this exists: `pm-plugins status`, `module`, `notifications`, `search` and `install` answer
one question at a time; the dashboard shows all of it at once and keeps it current. It talks
to the booted host only through the host's owner-only control socket (`host.control`), and to
the registries through the same library calls as the command line (`registry_client`). It is
served by the standard library's `http.server` on the loopback interface, behind a random
token, a Host-header check, CSRF checks and a strict Content-Security-Policy
(`dashboard.guard`); the page is plain static files (`dashboard/static/`).
"""
