"""What the booted reference host answers on its control socket.

Why this exists: `pm-plugins status | query | module | stop`, run from another shell, reach
the booted host only as JSON requests on its owner-only control socket (`host.control`).
This module maps each request (`{"op": ...}`) to one call on the `ReferenceHost`, checking
the fields it reads; an unknown op or a malformed field is a `ValueError`, which the
control server returns to the caller as the error sentence.
"""

from __future__ import annotations

from typing import Any

from host.reference_host import ReferenceHost
from host.services.notifications import PendingNotification

__all__ = ["answer"]


def answer(host: ReferenceHost, req: dict[str, Any]) -> Any:
    """The reply to one control request."""
    op = req["op"]
    if op == "status":
        return host.status()
    if op == "dns":
        return host.resolve(str(req["name"]), str(req.get("type", "A")))
    if op == "connection":
        return host.decide(
            binary=str(req["binary"]),
            domain=str(req.get("domain", "")),
            ip=str(req.get("ip", "")),
            port=int(req.get("port", 0)),
            protocol=int(req.get("protocol", 6)),
            inbound=bool(req.get("inbound", False)),
        )
    if op == "hook":
        meta = req.get("untyped_meta", [])
        if not isinstance(meta, list) or not all(isinstance(m, str) for m in meta):
            raise ValueError("untyped_meta must be a list of strings")
        return host.run_hook(str(req["hook_point"]), str(req["entity"]), tuple(meta))
    if op == "disable":
        return {"stopped": host.disable(str(req["module"]))}
    if op == "enable":
        host.enable(str(req["module"]))
        return {}
    if op == "reload":
        return _reload(host, str(req["module"]))
    if op == "trust-changed":
        return {"stopped": host.recheck_trust()}
    if op in ("config", "config-get", "config-set", "config-reset"):
        return _config(host, op, req)
    if op in ("notifications", "answer", "dismiss"):
        return _notifications(host, op, req)
    if op == "stop":
        host.request_stop()
        return {}
    raise ValueError(f"unknown request {op!r}")


def _reload(host: ReferenceHost, name: str) -> dict[str, Any]:
    """Run a plugin again from the state root's current release (`pm-plugins dev`)."""
    if host.registrations is None:
        raise ValueError("this host cannot reload a plugin while it runs")
    refused = host.registrations.reload(name)
    row = next((m for m in host.status()["modules"] if m["name"] == name), None)
    state = "refused" if refused else (row["state"] if row else "absent")
    return {"state": state, "reason": refused or (row["reason"] if row else "")}


def _config(host: ReferenceHost, op: str, req: dict[str, Any]) -> Any:
    """List the registered options, or get, set (plain JSON of the option's type) or reset
    one by key."""
    if op == "config":
        return {"options": host.config.options()}
    key = req.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"{op} needs a config key")
    if op == "config-get":
        return host.config.option(key)
    if op == "config-reset":
        return host.config.reset(key)
    if "value" not in req:
        raise ValueError("config-set needs a value")
    return host.config.set(key, req["value"])


def _notifications(host: ReferenceHost, op: str, req: dict[str, Any]) -> Any:
    """List the plugins' notifications, answer one with an action, or dismiss a shown one."""
    center = host.plugins.services.notifications
    if op == "answer":
        center.answer(str(req["event_id"]), str(req["action"]))
        return {}
    if op == "dismiss":
        center.dismiss(str(req["event_id"]))
        return {}
    return {
        "waiting": [_notification(n) for n in center.pending()],
        "shown": [_notification(n) for n in center.shown()],
    }


def _notification(n: PendingNotification) -> dict[str, Any]:
    actions = [{"id": a.id, "text": a.text} for a in n.actions]
    return {"event_id": n.event_id, "plugin": n.plugin, "title": n.title, "message": n.message,
            "actions": actions}  # fmt: skip
