"""What each of the page's POST requests does: one control request to the booted host, a
search of the registries, or a job started.

Why this exists: the server (`dashboard.server`) checks who asks; this module checks what is
asked. Each route reads the fields it needs from the JSON body (a malformed field is a
`ValueError`, answered 400 with its sentence) and makes exactly one call: a control request
on the host's owner-only socket (the host's own refusals come back as `ControlError`, one
sentence, answered 409), `dashboard.catalog.search`, or `Jobs.start`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dashboard import catalog
from dashboard.jobs import Jobs
from dashboard.live import Live
from host.control import request
from loader.home import Home

__all__ = ["ROUTES", "Backend"]

#: How long a change the page asked for may take the host (stopping a module's dependents).
CONTROL_TIMEOUT = 30.0


@dataclass
class Backend:
    """What the routes act on."""

    home: Home
    live: Live
    jobs: Jobs

    def control(self, op: str, **args: Any) -> Any:
        """One request to the booted host; the page sees its effect at the next poll, now."""
        try:
            return request(self.home.control_socket, op, timeout=CONTROL_TIMEOUT, **args)
        finally:
            self.live.poke()


Body = dict[str, Any]


def _text(body: Body, field: str, limit: int = 256) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{field} must be a text of 1 to {limit} characters")
    return value


def module(backend: Backend, body: Body) -> Any:
    """Enable or disable a module (its dependents stop first and come back)."""
    name, enabled = _text(body, "module"), body.get("enabled")
    if not isinstance(enabled, bool):
        raise ValueError("enabled must be true or false")
    if enabled:
        return backend.control("enable", module=name)
    return backend.control("disable", module=name)


def answer(backend: Backend, body: Body) -> Any:
    """Answer a waiting notification: the plugin's notify() returns the action."""
    return backend.control("answer", event_id=_text(body, "event_id"), action=_text(body, "action"))


def dismiss(backend: Backend, body: Body) -> Any:
    return backend.control("dismiss", event_id=_text(body, "event_id"))


def config_set(backend: Backend, body: Body) -> Any:
    """Set an option to a plain JSON value of its type (the host checks the type)."""
    if "value" not in body:
        raise ValueError("value is missing")
    return backend.control("config-set", key=_text(body, "key", 1024), value=body["value"])


def config_reset(backend: Backend, body: Body) -> Any:
    return backend.control("config-reset", key=_text(body, "key", 1024))


def search(backend: Backend, body: Body) -> Any:
    """The registries' releases matching the text (every one for an empty text)."""
    text = body.get("text", "")
    if not isinstance(text, str) or len(text) > 256:
        raise ValueError("text must be a text of at most 256 characters")
    notes: list[str] = []
    results = catalog.search(backend.home, text.strip(), notes.append)
    return {"results": results, "notes": notes}


def job(backend: Backend, body: Body) -> Any:
    """Start an install, upgrade or uninstall; its progress comes with the live updates."""
    return {"id": backend.jobs.start(_text(body, "kind", 16), _text(body, "name"))}


ROUTES: dict[str, Callable[[Backend, Body], Any]] = {
    "/api/module": module,
    "/api/answer": answer,
    "/api/dismiss": dismiss,
    "/api/config": config_set,
    "/api/config-reset": config_reset,
    "/api/search": search,
    "/api/jobs": job,
}
