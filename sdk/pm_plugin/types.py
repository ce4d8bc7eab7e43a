"""The values a plugin author handles: verdicts, decisions, DNS answers, hook entities.

The wire messages are re-exported under plain names so a plugin never imports from
`pm_plugin.wire` directly; the enums mirror the PR's numbers exactly.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Any

from pm_plugin.wire.pmplugin.v1 import extensions_pb2
from pm_plugin.wire.portmaster import network_pb2, plugins_pb2, resolver_pb2

Connection = network_pb2.Connection
DNSQuestion = resolver_pb2.DNSQuestion
DNSResponse = resolver_pb2.DNSResponse
DNSRR = resolver_pb2.DNSRR
Entity = extensions_pb2.Entity
PluginInfo = plugins_pb2.Plugin


class Verdict(enum.IntEnum):
    """The PR's verdicts (network.proto `Verdict`)."""

    UNDECIDED = 0
    UNDETERMINABLE = 1
    ACCEPT = 2
    BLOCK = 3
    DROP = 4
    REROUTE_TO_NS = 5
    REROUTE_TO_TUNNEL = 6
    FAILED = 7


def wire_verdict(verdict: Verdict) -> Any:
    """A Verdict for a generated message's enum field (the numbers are the same)."""
    return int(verdict)


#: The PR's host asks the next decider on these.
NOT_DECIDED = frozenset({Verdict.UNDECIDED, Verdict.UNDETERMINABLE, Verdict.FAILED})


class PluginType(enum.IntEnum):
    """The PR's plugin types (plugins.proto `PluginType`)."""

    UNKNOWN = 0
    BASE = 1
    DECIDER = 2
    REPORTER = 3
    RESOLVER = 4


#: plugins.json type names -> wire numbers. "hook" is ours and has no wire number.
TYPE_NAMES: dict[str, PluginType] = {
    "base": PluginType.BASE,
    "decider": PluginType.DECIDER,
    "reporter": PluginType.REPORTER,
    "resolver": PluginType.RESOLVER,
}
KNOWN_TYPES = frozenset({*TYPE_NAMES, "hook"})


@dataclass(frozen=True)
class Decision:
    """A decider's answer. `cache_ttl` (seconds) is honoured on the streamed extension only.

    With a TTL the host reuses this plugin's answer, UNDECIDED too, for connections equal in
    every field but `id` and `started`, for at most the host's cap (300 s by default); the
    deciders before this one are still asked. `forget_cached_verdicts()` ends it early.
    """

    verdict: Verdict
    reason: str = ""
    cache_ttl: float = 0.0


def as_decision(result: object) -> Decision:
    """Accept what a decider function may return: a Decision, a Verdict, or a tuple.

    Raises:
        TypeError: the decider returned something else (a bug in the plugin).
    """
    if isinstance(result, Decision):
        return result
    if isinstance(result, int) and not isinstance(result, bool):
        return Decision(Verdict(result))
    if isinstance(result, tuple) and 1 <= len(result) <= 3:
        verdict = Verdict(result[0])
        reason = str(result[1]) if len(result) > 1 else ""
        ttl = float(result[2]) if len(result) > 2 else 0.0
        return Decision(verdict, reason, ttl)
    raise TypeError(f"a decider must return a Verdict, a tuple or a Decision, not {result!r}")


# DNS record types and classes the PR's host understands (plus PTR, which ours does).
TYPE_A, TYPE_CNAME, TYPE_PTR, TYPE_TXT, TYPE_AAAA, TYPE_ANY = 1, 5, 12, 16, 28, 255
CLASS_INET = 1
RCODE_NOERROR, RCODE_NXDOMAIN = 0, 3


def fqdn(name: str) -> str:
    """`example.com` -> `example.com.` (DNS names on the wire carry the trailing dot)."""
    return name if name.endswith(".") else name + "."


def record_a(name: str, ip: str, ttl: int = 60) -> resolver_pb2.DNSRR:
    """An A record: data is the raw 4 bytes of the address."""
    packed = ipaddress.IPv4Address(ip).packed
    return resolver_pb2.DNSRR(name=fqdn(name), type=TYPE_A, data=packed, ttl=ttl, **{"class": 1})


def record_aaaa(name: str, ip: str, ttl: int = 60) -> resolver_pb2.DNSRR:
    """An AAAA record: data is the raw 16 bytes of the address."""
    packed = ipaddress.IPv6Address(ip).packed
    return resolver_pb2.DNSRR(name=fqdn(name), type=TYPE_AAAA, data=packed, ttl=ttl, **{"class": 1})


def record_txt(name: str, text: str, ttl: int = 60) -> resolver_pb2.DNSRR:
    """A TXT record: data is the string's raw bytes, without a length prefix."""
    return resolver_pb2.DNSRR(
        name=fqdn(name), type=TYPE_TXT, data=text.encode(), ttl=ttl, **{"class": 1}
    )


def record_cname(name: str, target: str, ttl: int = 60) -> resolver_pb2.DNSRR:
    """A CNAME record: data is the target name as text."""
    return resolver_pb2.DNSRR(
        name=fqdn(name), type=TYPE_CNAME, data=fqdn(target).encode(), ttl=ttl, **{"class": 1}
    )


def record_ptr(name: str, target: str, ttl: int = 60) -> resolver_pb2.DNSRR:
    """A PTR record (ours; the PR's host drops replies holding one): the target as text."""
    return resolver_pb2.DNSRR(
        name=fqdn(name), type=TYPE_PTR, data=fqdn(target).encode(), ttl=ttl, **{"class": 1}
    )


def answer(*records: resolver_pb2.DNSRR, rcode: int = RCODE_NOERROR) -> resolver_pb2.DNSResponse:
    """A handled reply: the records given (none is NOERROR with no answers)."""
    return resolver_pb2.DNSResponse(rcode=rcode, rrs=list(records))


def nxdomain() -> resolver_pb2.DNSResponse:
    """A handled reply saying the name does not exist."""
    return resolver_pb2.DNSResponse(rcode=RCODE_NXDOMAIN)
