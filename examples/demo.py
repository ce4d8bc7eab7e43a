"""`make demo`: the main job end to end, with the real `pm-plugins` command, printing each step.

In a fresh state root (a temporary folder, so the demo can run again and again):

1. publish the embedded index: the example plugins, signed, in a local TUF index;
2. `pm-plugins install hosts` (TUF download, publisher signature, atomic install);
3. point the plugin at a demo hosts file, and `pm-plugins verify`;
4. `pm-plugins boot` the reference host in the background;
5. `pm-plugins query dns printer.lan`: answered by the plugin; `pm-plugins status`;
6. `pm-plugins stop`;
7. flip one byte of the installed plugin: `pm-plugins verify` refuses it.

Set `PM_PLUGINS_DEMO_HOME=DIR` to keep the state root for a look around afterwards.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class Demo:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "PM_PLUGINS_HOME": str(home)}
        self.env.pop("PM_PLUGINS_DEV_MODE", None)

    @staticmethod
    def step(text: str) -> None:
        print(f"\n==> {text}", flush=True)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli", *args]

    def run(self, *args: str, expect: int = 0) -> str:
        print(f"$ pm-plugins {shlex.join(args)}", flush=True)
        done = subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=120
        )
        for line in (done.stderr + done.stdout).splitlines():
            print(f"  {line}")
        if done.returncode != expect:
            raise SystemExit(f"demo failed: `pm-plugins {' '.join(args)}` exited {done.returncode}")
        return done.stdout

    def wait_for_host(self, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit("demo failed: the host exited while booting")
            probe = subprocess.run(
                self.argv("status"), env=self.env, capture_output=True, timeout=30
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("demo failed: the host did not answer within 30 s")


def main() -> int:
    keep = os.environ.get("PM_PLUGINS_DEMO_HOME")
    with tempfile.TemporaryDirectory(prefix="pm-plugins-demo-") as scratch:
        home = Path(keep) if keep else Path(scratch) / "home"
        demo = Demo(home)
        print(f"state root: {home}")

        demo.step("publish the embedded index (examples/plugins, signed, local TUF index)")
        demo.run("update")
        demo.run("search")

        demo.step("install a plugin by name: TUF-verified download, publisher signature checked")
        demo.run("install", "hosts")

        demo.step("point it at a demo hosts file, then run the loader's checks")
        hosts_file = Path(scratch) / "hosts"
        hosts_file.write_text("192.0.2.7    printer.lan printer\n2001:db8::7  printer.lan\n")
        entries = json.loads((home / "plugins.json").read_text())
        for entry in entries:
            if entry["name"] == "hosts":
                entry["config"] = {"path": str(hosts_file)}
        (home / "plugins.json").write_text(json.dumps(entries, indent=2) + "\n")
        print(f"  plugins.json: {json.dumps(entries)}")
        demo.run("verify")

        demo.step("boot the reference host (core modules + verified plugins)")
        print("$ pm-plugins boot &", flush=True)
        host = subprocess.Popen(
            demo.argv("boot"),
            env=demo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            demo.wait_for_host(host)
            demo.step("resolve a name from the demo hosts file through the plugin")
            demo.run("query", "dns", "printer.lan")
            demo.run("query", "dns", "printer.lan", "--type", "AAAA")
            demo.step("the host's modules and plugins")
            demo.run("status")
            demo.step("stop the host")
            demo.run("stop")
            output, _ = host.communicate(timeout=30)
        finally:
            if host.poll() is None:
                host.kill()
                host.communicate()
        for line in output.splitlines():
            print(f"  host: {line}")
        if host.returncode != 0:
            raise SystemExit(f"demo failed: the host exited {host.returncode}")

        demo.step("flip one byte of the installed plugin: the loader refuses it")
        (artifact,) = (home / "plugins" / "hosts").glob("*/plugin")
        data = bytearray(artifact.read_bytes())
        data[-2] ^= 0x01
        artifact.write_bytes(bytes(data))
        demo.run("verify", expect=1)
    print("\ndemo done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
