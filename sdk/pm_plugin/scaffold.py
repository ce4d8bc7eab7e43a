"""A new plugin folder that works as written: `pm-plugins new NAME --type TYPE`.

Why this exists: a plugin author's first ten minutes should be editing a plugin that already
packages, installs and passes its test, not reading examples for the manifest's fields, the
verdict names and the harness. `write_plugin` writes, for one type (decider, resolver,
reporter, hook): `plugin.toml` (with the host module the type needs and a commented
`[capabilities]` table), the executable `plugin`, `test_<name>.py` (pm_plugin.testing) and a
short README. It lives in the SDK, which imports nothing of the host, so it can also run as
`python -m pm_plugin.scaffold NAME --type TYPE` with the SDK alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["TYPES", "write_plugin"]

#: Plugin type -> (the host module it extends, the plugin's body, the test's body).
TYPES = ("decider", "resolver", "reporter", "hook")
_HOST = {"decider": "firewall", "resolver": "resolver", "reporter": "firewall", "hook": "auth"}

_BODIES = {
    "decider": '''\
from pm_plugin import Connection, Decision, Verdict, register_decider, serve

BLOCKED = {"ads.example."}


def decide(conn: Connection) -> Decision:
    """ACCEPT, BLOCK, DROP, ... or UNDECIDED to let the next decider (or the default) decide."""
    if conn.entity.domain in BLOCKED:
        return Decision(Verdict.BLOCK, f"{conn.entity.domain} is on the block list")
    return Decision(Verdict.UNDECIDED)


if __name__ == "__main__":
    register_decider(decide)
    serve()
''',
    "resolver": '''\
from pm_plugin import (
    TYPE_A, Connection, DNSQuestion, DNSResponse, answer, record_a, register_resolver, serve,
)

NAMES = {"printer.lan.": "192.0.2.10"}


def resolve(question: DNSQuestion, connection: Connection) -> DNSResponse | None:
    """An answer for names this plugin knows; None lets the next resolver answer."""
    ip = NAMES.get(question.name.lower())
    if ip is None or question.type != TYPE_A:
        return None
    return answer(record_a(question.name, ip))


if __name__ == "__main__":
    register_resolver(resolve)
    serve()
''',
    "reporter": '''\
import logging

from pm_plugin import Connection, Verdict, register_reporter, serve

log = logging.getLogger("{name}")


def report(conn: Connection) -> None:
    """Told of every connection with its final verdict; never slows a decision."""
    verdict = Verdict(conn.verdict).name
    log.info("%s -> %s: %s", conn.process.binary_path, conn.entity.domain, verdict)


if __name__ == "__main__":
    register_reporter(report)
    serve()
''',
    "hook": '''\
from pm_plugin import Entity, HookError, NullPlugin, register_hooks, serve

BANNED = {"mallory"}


class Hooks(NullPlugin):
    """Every hook point is a no-op until overridden; raising HookError aborts the request."""

    def pre_auth_check(self, entity: Entity, data: Entity) -> Entity:
        if entity.id in BANNED:
            raise HookError(f"{entity.id} may not log in")
        return entity


if __name__ == "__main__":
    register_hooks(Hooks())
    serve()
''',
}

_TESTS = {
    "decider": """\
def test_a_blocked_domain_is_blocked() -> None:
    with PluginUnderTest(PLUGIN, name="{name}", types=["decider"]) as plugin:
        assert plugin.decide(domain="ads.example").verdict == Verdict.BLOCK
        assert plugin.decide(domain="example.com").verdict == Verdict.UNDECIDED
""",
    "resolver": """\
def test_a_known_name_is_answered() -> None:
    with PluginUnderTest(PLUGIN, name="{name}", types=["resolver"]) as plugin:
        reply = plugin.resolve("printer.lan", "A")
        assert reply is not None and reply.rrs[0].data == bytes([192, 0, 2, 10])
        assert plugin.resolve("example.com", "A") is None
""",
    "reporter": """\
def test_a_report_is_logged() -> None:
    with PluginUnderTest(PLUGIN, name="{name}", types=["reporter"]) as plugin:
        plugin.report(domain="example.com", verdict=Verdict.BLOCK)
        assert plugin.logged("/usr/bin/curl -> example.com.: BLOCK")
""",
    "hook": """\
def test_a_banned_entity_is_refused() -> None:
    with PluginUnderTest(PLUGIN, name="{name}", types=["hook"]) as plugin:
        assert plugin.run_hook("PreAuthCheck", "alice").id == "alice"
        with pytest.raises(HookRefused, match="mallory may not log in"):
            plugin.run_hook("PreAuthCheck", "mallory")
""",
}

_TOML = """\
name = "{name}"
version = "0.1.0"
description = "{description}"
publisher = "{publisher}"
types = ["{type}"]
executable = "plugin"

[requires]
# host modules this plugin needs, and other plugins with PEP 440 specifiers
host = ["{host}"]
plugins = {{}}

[capabilities]
# What the plugin may reach beyond its own data folder; the sandbox enforces exactly this,
# and users are asked before an upgrade asks for more. Uncomment what it needs:
# read = ["/etc/hosts"]          # files or folders it reads
# write = []                     # files or folders it writes
# network = ["tcp:443"]          # outgoing TCP (or udp:) ports
# processes = true               # it starts child processes
"""

_README = """\
# {name}

A pm-plugins {type} plugin.

    python -m pytest test_{module}.py              # the plugin as a real process, under a test host
    pm-plugins --dev-mode install .                # run it unsigned in a dev-mode host
    pm-plugins dev .                               # ... and restart it on every change
    pm-plugins package . --key KEY --out dist      # a signed package for a registry

`plugin` is the executable the host starts; `plugin.toml` is what the package's signed
manifest says about it (name, version, types, the host modules it needs, its capabilities).
"""


def write_plugin(
    directory: Path, name: str, type_: str, *, publisher: str = "me", python: str = ""
) -> list[Path]:
    """Write a working `type_` plugin called `name` into the new folder `directory`; returns
    the files written. FileExistsError when `directory` exists and is not empty."""
    if type_ not in TYPES:
        raise ValueError(f"a plugin type is one of {', '.join(TYPES)}, not {type_!r}")
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} already exists and is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    module = name.replace("-", "_")
    shebang = f"#!{python}" if python else "#!/usr/bin/env python3"
    doc = f'"""{name}: a {type_} plugin for pm-plugins (`pm-plugins new` wrote this; edit it)."""'
    files = {
        "plugin.toml": _TOML.format(
            name=name,
            type=type_,
            host=_HOST[type_],
            publisher=publisher,
            description=f"A {type_} plugin.",
        ),
        "plugin": f"{shebang}\n{doc}\n\n{_BODIES[type_].replace('{name}', name)}",
        f"test_{module}.py": _test(name, type_),
        "README.md": _README.format(name=name, type=type_, module=module),
    }
    written = []
    for file_name, text in files.items():
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    os.chmod(directory / "plugin", 0o755)
    return written


def _test(name: str, type_: str) -> str:
    third_party = ["import pytest"] if type_ == "hook" else []
    if type_ in ("decider", "reporter"):
        third_party.append("from pm_plugin import Verdict")
    harness = "HookRefused, PluginUnderTest" if type_ == "hook" else "PluginUnderTest"
    third_party.append(f"from pm_plugin.testing import {harness}")
    head = "\n".join(
        [f'"""{name}, tested as a real process."""', "", "from pathlib import Path", "",
         *third_party, ""]
    )  # fmt: skip
    plugin = 'PLUGIN = Path(__file__).with_name("plugin")\n'
    return f"{head}\n{plugin}\n\n{_TESTS[type_].replace('{name}', name)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pm_plugin.scaffold")
    parser.add_argument("name")
    parser.add_argument("--type", choices=TYPES, required=True)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        written = write_plugin(args.dir or Path(args.name), args.name, args.type)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
