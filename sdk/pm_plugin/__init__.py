"""The SDK a plugin author imports: serve(), type registration, host services, NullPlugin.

The Python form of the Portmaster plugin PR's Go `framework`:

    from pm_plugin import Verdict, register_decider, serve

    def decide(conn):
        if conn.process.binary_path == "/usr/bin/curl" and conn.entity.domain in (
            "example.com.", "safing.io."):
            return Verdict.ACCEPT, "allowed"
        return Verdict.UNDECIDED

    register_decider(decide)
    serve()

Imports nothing else of ours: it ships as a distribution of its own (`pm-plugin`).

## Types of plugin

- **decider** (`register_decider`): `f(conn)` returns a `Verdict`, `(verdict, reason)` or a
  `Decision` (with `cache_ttl`). Deciders run in the configured order; the first answer
  that is not `UNDECIDED`, `UNDETERMINABLE` or `FAILED` wins.
- **reporter** (`register_reporter`): `f(conn)` is told of every connection with
  `conn.verdict`, its final verdict; it never slows a decision.
- **resolver** (`register_resolver`): `f(question, conn)` returns `answer(record_a(...))`,
  `nxdomain()`, or None for "not mine".
- **hook** (`register_hooks`): a `NullPlugin` subclass overriding hook methods; the hook
  points are `HOOK_POINTS` (`PreAuthCheck` is `pre_auth_check(entity, data)`); raising
  `HookError` aborts the request.

## Verdicts

`Verdict`: `UNDECIDED`, `UNDETERMINABLE`, `ACCEPT`, `BLOCK`, `DROP`, `REROUTE_TO_NS`,
`REROUTE_TO_TUNNEL`, `FAILED` (Portmaster's numbers).

## Host services

Reachable once `on_init` functions run (inside the host's Configure):
`config()` (a `Config`: `register_option`, `get_*`, `watch`, `on_change`; a person changes
values with `pm-plugins config set` and the plugin's watch fires), `notify(title, message,
actions=[("id", "text")])` (returns the action the person picked), `forget_cached_verdicts()`,
and for privileged plugins `plugin_manager()`.

## plugin.toml and capabilities

Next to the executable, `plugin.toml` names the plugin (`name`, `version`, `description`,
`publisher`, `types`, `executable`), what it needs (`[requires] host = ["firewall"]`,
`plugins = {other = ">=1"}`) and what it may reach beyond its own data folder
(`[capabilities] read = [...]`, `write = [...]`, `network = ["tcp:443"]`,
`processes = true`). The host's sandbox grants exactly those; `pm-plugins new` writes one.

Testing: `pm_plugin.testing`. A new plugin folder: `pm_plugin.scaffold`.
"""

from __future__ import annotations

import os

# grpcio's EventEngine adds I/O threads and about six context switches to every call; its
# polling engine answers a decision 10-15% sooner here (bench/runtime.py). It only takes
# effect before grpc is first imported, and a value the user set wins.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener")

from typing import NoReturn

from pm_plugin._framework import NotConfiguredError
from pm_plugin._plugin import Plugin
from pm_plugin.hooks import HOOK_POINTS, HookError, NullPlugin
from pm_plugin.host import Config, Notifier, PluginManager, Value
from pm_plugin.types import (
    CLASS_INET,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_CNAME,
    TYPE_PTR,
    TYPE_TXT,
    Connection,
    Decision,
    DNSQuestion,
    DNSResponse,
    Entity,
    Verdict,
    answer,
    fqdn,
    nxdomain,
    record_a,
    record_aaaa,
    record_cname,
    record_ptr,
    record_txt,
)

default = Plugin()
"""The plugin of this process; the module-level functions act on it."""

register_decider = default.register_decider
register_reporter = default.register_reporter
register_resolver = default.register_resolver
register_hooks = default.register_hooks
on_init = default.on_init
on_shutdown = default.on_shutdown
config = default.config
plugin_manager = default.plugin_manager
notify = default.notify
forget_cached_verdicts = default.forget_cached_verdicts


def serve() -> NoReturn:
    """Serve the default plugin to the host that started this process."""
    default.serve()


__all__ = [
    "CLASS_INET",
    "HOOK_POINTS",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_ANY",
    "TYPE_CNAME",
    "TYPE_PTR",
    "TYPE_TXT",
    "Config",
    "Connection",
    "DNSQuestion",
    "DNSResponse",
    "Decision",
    "Entity",
    "HookError",
    "NotConfiguredError",
    "Notifier",
    "NullPlugin",
    "Plugin",
    "PluginManager",
    "Value",
    "Verdict",
    "answer",
    "config",
    "default",
    "forget_cached_verdicts",
    "fqdn",
    "notify",
    "nxdomain",
    "on_init",
    "on_shutdown",
    "plugin_manager",
    "record_a",
    "record_aaaa",
    "record_cname",
    "record_ptr",
    "record_txt",
    "register_decider",
    "register_hooks",
    "register_reporter",
    "register_resolver",
    "serve",
]
