"""What a plugin author imports: serve(), type registration, host services, NullPlugin.

The Python form of the Portmaster plugin PR's Go `framework`:

    from pm_plugin import Verdict, register_decider, serve

    def decide(conn):
        if conn.process.binary_path == "/usr/bin/curl" and conn.entity.domain in (
            "example.com.", "safing.io."):
            return Verdict.ACCEPT, "allowed"
        return Verdict.UNDECIDED

    register_decider(decide)
    serve()

Imports nothing else of ours, so it can ship as a small distribution of its own.
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

#: The plugin of this process; the module-level functions below act on it.
default = Plugin()

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
