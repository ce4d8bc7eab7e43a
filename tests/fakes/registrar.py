#!/usr/bin/env python3
"""A real plugin that registers and unregisters plugins through the host's plugin manager.

It is a decider that decides nothing: a connection to the domain `VERB.NAME.act.` (VERB is
`register` or `unregister`) makes it call RegisterPlugin for NAME (with the PluginConfig its
own static config gives NAME under "configs": types as wire numbers, privileged,
static_config, disable_autostart) or UnregisterPlugin, on a thread of its own, and write the
answer, `{"code": "OK" | status name, "details": ...}`, to
`<its data folder>/results/VERB.NAME.json`. The pairs [VERB, NAME] of its static config
"on_init" it does the same way inside Configure, while the host is still booting. It calls the
plugin manager over its backchannel even when it is not privileged, which the host must refuse.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import grpc

import pm_plugin
from pm_plugin import Verdict
from pm_plugin.wire.portmaster import plugins_pb2, plugins_pb2_grpc


def _config(name: str) -> plugins_pb2.PluginConfig:
    static = pm_plugin.default.static_config or {}
    given: dict[str, Any] = static.get("configs", {}).get(name, {})
    return plugins_pb2.PluginConfig(
        name=name,
        plugin_types=given.get("types", []),
        privileged=given.get("privileged", False),
        static_config=json.dumps(given["static_config"]).encode()
        if "static_config" in given
        else b"",
        disable_autostart=given.get("disable_autostart", False),
    )


def _act(verb: str, name: str) -> None:
    stub = plugins_pb2_grpc.PluginManagerServiceStub(pm_plugin.default._backchannel())
    try:
        if verb == "register":
            request = plugins_pb2.RegisterPluginRequest(config=_config(name))
            stub.RegisterPlugin(request, timeout=60)
        else:
            stub.UnregisterPlugin(plugins_pb2.UnregisterPluginRequest(name=name), timeout=60)
        answer = {"code": "OK", "details": ""}
    except grpc.RpcError as err:
        answer = {"code": err.code().name, "details": err.details() or ""}
    folder = os.path.join(pm_plugin.default.base_directory, "results")
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{verb}.{name}.tmp")
    with open(temporary, "w") as out:
        json.dump(answer, out)
    os.replace(temporary, os.path.join(folder, f"{verb}.{name}.json"))


def decide(conn: pm_plugin.Connection) -> object:
    parts = conn.entity.domain.rstrip(".").split(".")
    if len(parts) == 3 and parts[2] == "act" and parts[0] in ("register", "unregister"):
        threading.Thread(target=_act, args=(parts[0], parts[1]), daemon=True).start()
    return Verdict.UNDECIDED


@pm_plugin.on_init
def early() -> None:
    """The [VERB, NAME] pairs of static config "on_init", done inside Configure (while the
    host boots)."""
    for verb, name in (pm_plugin.default.static_config or {}).get("on_init", []):
        _act(verb, name)


pm_plugin.register_decider(decide)
pm_plugin.serve()
