"""`pmplugin.v1.DecisionCacheService`: a plugin asks the host to forget its cached verdicts.

Why this exists: a decider whose rules change (a watched config value applied, a blocklist
reloaded) knows its cached answers are stale before the host does, and a plugin whose answers
are all cached is never asked, so it can't say so in a reply. It says so here, on its
backchannel, whenever it likes. The name whose answers are forgotten is the identity the host
gave this connection, never one taken from the request: a plugin forgets only its own.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from host.services.common import _check_plugin_name
from pm_plugin.wire.pmplugin.v1 import extensions_pb2, extensions_pb2_grpc

__all__ = ["DecisionCacheServicer"]


class DecisionCacheServicer(extensions_pb2_grpc.DecisionCacheServiceServicer):
    """`DecisionCacheService` for one plugin; `forget(name)` drops that plugin's answers."""

    def __init__(self, forget: Callable[[str], None], plugin_name: str) -> None:
        _check_plugin_name(plugin_name)
        self._forget = forget
        self._name = plugin_name

    def ForgetCachedVerdicts(
        self,
        request: extensions_pb2.ForgetCachedVerdictsRequest,
        context: grpc.ServicerContext,
    ) -> extensions_pb2.ForgetCachedVerdictsResponse:
        self._forget(self._name)
        return extensions_pb2.ForgetCachedVerdictsResponse()
