#!/usr/bin/env python3
"""A hostile plugin for tests/test_face_attacks.py: it attacks the person's side of the host
(config.json and its lock, the control socket, the config listing, the status reason).

argv[1] is the mode:
- bigerr: writes one line of 1 MiB to stderr and exits before its handshake;
- anything else: a decider that decides nothing. The verbs of its static config "on_init"
  it does inside Configure; a connection to `VERB.act.` makes it do VERB later. Each verb
  writes what happened to `<its data folder>/results/VERB.json`:
  - files: for each path of static config "paths": read it, write it, plant a symlink there;
  - control: send `{"op": "reload", "module": <itself>}` to static config "control";
  - hoard: register as many option bytes as the host allows, in control characters;
  - secret: register the string option "token" and record the value it reads;
  - squat: register the option "victim/token" (the plugin is called `plugins`);
  - trespass: register, read and watch another plugin's option by every key that might
    reach it;
  - retype: register "n" as an int the first time, as a string ever after; record its value.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import grpc

import pm_plugin
from pm_plugin import Verdict

MODE = sys.argv[1] if len(sys.argv) > 1 else "decider"
_retyped = [False]


def _static() -> dict[str, Any]:
    static = pm_plugin.default.static_config
    return static if isinstance(static, dict) else {}


def _try(what: str, run: Any) -> str:
    try:
        return f"ok: {run()}"
    except (OSError, grpc.RpcError) as err:
        return f"refused: {type(err).__name__}: {err}"


def files() -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for path in _static().get("paths", []):

        def read(path: str = path) -> str:
            with open(path, "rb") as f:
                return f"read {len(f.read())} bytes"

        def write(path: str = path) -> str:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(fd, b'{"format": 1, "values": {}}')
            os.close(fd)
            return "written"

        def plant(path: str = path) -> str:
            os.symlink("/etc/passwd", path + ".planted")
            return "planted"

        outcomes[f"read {path}"] = _try("read", read)
        outcomes[f"write {path}"] = _try("write", write)
        outcomes[f"plant {path}"] = _try("plant", plant)
    return outcomes


def control() -> dict[str, str]:
    def reload() -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(_static()["control"])
            request = {"op": "reload", "module": pm_plugin.default.name}
            sock.sendall(json.dumps(request).encode() + b"\n")
            return sock.recv(65536).decode(errors="replace").strip()

    return {"reload": _try("reload", reload)}


def hoard() -> dict[str, str]:
    config, filler, held = pm_plugin.default.config(), "\x01" * 3800, 0
    try:
        for i in range(256):
            config.register_option(f"hoard{i}", filler, name="h", description=filler)
            held += 1
    except grpc.RpcError as err:
        return {"held": str(held), "stopped": f"{err.code().name}"}  # type: ignore[attr-defined]
    return {"held": str(held)}


def secret() -> dict[str, str]:
    config = pm_plugin.default.config()
    config.register_option("token", "", name="API token", description="Secret")
    return {"token": config.get_string("token")}


def squat() -> dict[str, str]:
    """Named `plugins`, its option `victim/token` is `plugins/plugins/victim/token`."""
    pm_plugin.default.config().register_option("victim/token", "", name="victim's token?")
    return {"registered": "victim/token"}


def trespass() -> dict[str, str]:
    """Reach another plugin's option `plugins/victim/token` through the config service."""
    from pm_plugin.wire.portmaster import config_pb2, config_pb2_grpc

    stub = config_pb2_grpc.ConfigServiceStub(pm_plugin.default._backchannel())
    outcomes: dict[str, str] = {}
    for key in ("plugins/victim/token", "../victim/token", "/plugins/victim/token",
                "victim/../../victim/token", "plugins/victim/token/"):  # fmt: skip
        option = config_pb2.Option(key=key, name="mine", default=config_pb2.Value(string="x"))
        request = config_pb2.RegisterRequest(option=option)
        outcomes[f"register {key}"] = _try("register", lambda r=request: stub.RegisterOption(r))
        get = config_pb2.GetValueRequest(key=key)
        outcomes[f"get {key}"] = _try("get", lambda g=get: str(stub.GetValue(g).value))
    watch = config_pb2.WatchChangesRequest(keys=["plugins/victim/token"])
    outcomes["watch"] = _try("watch", lambda: str(next(iter(stub.WatchValues(watch)))))
    return outcomes


def retype() -> dict[str, str]:
    config = pm_plugin.default.config()
    if _retyped[0]:
        config.register_option("n", "text", name="n")
        value = config.get("n")
        return {"type": "string", "value": json.dumps(str(value).strip())}
    _retyped[0] = True
    config.register_option("n", 1, name="n")
    return {"type": "int", "value": str(config.get_int("n"))}


VERBS = {
    "files": files,
    "control": control,
    "hoard": hoard,
    "secret": secret,
    "squat": squat,
    "trespass": trespass,
    "retype": retype,
}


def act(verb: str) -> None:
    result = VERBS[verb]()
    folder = os.path.join(pm_plugin.default.base_directory, "results")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f".{verb}.tmp"), "w", encoding="utf-8") as out:
        json.dump(result, out)
    os.replace(os.path.join(folder, f".{verb}.tmp"), os.path.join(folder, f"{verb}.json"))


def decide(conn: pm_plugin.Connection) -> object:
    parts = conn.entity.domain.rstrip(".").split(".")
    if len(parts) == 2 and parts[1] == "act" and parts[0] in VERBS:
        act(parts[0])
    return Verdict.UNDECIDED


@pm_plugin.on_init
def early() -> None:
    for verb in _static().get("on_init", []):
        act(verb)


def main() -> None:
    if MODE == "bigerr":
        sys.stderr.write("E" * (1 << 20) + "\n")
        sys.stderr.flush()
        sys.exit(1)
    pm_plugin.register_decider(decide)
    pm_plugin.serve()


if __name__ == "__main__":
    main()
