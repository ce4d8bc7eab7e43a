"""DNS answers: which a resolver plugin may give, how the host prints them, and the system
resolver the host falls back to.

Why this exists: `pm-plugins query` shows what resolver plugins answered, or what the system
resolver says when none did; both are turned into the same JSON rows here, apart from the
reference host's module wiring.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from pm_plugin.wire.portmaster import resolver_pb2

__all__ = ["RECORD_DATA_LENGTH", "malformed_records", "record_json", "system_resolve"]


def record_json(rr: resolver_pb2.DNSRR) -> dict[str, Any]:
    """One answer record as `query --json` prints it (addresses in their text form)."""
    data: str
    if rr.type == 1 and len(rr.data) == 4:
        data = str(ipaddress.IPv4Address(rr.data))
    elif rr.type == 28 and len(rr.data) == 16:
        data = str(ipaddress.IPv6Address(rr.data))
    else:
        data = rr.data.decode("utf-8", "replace")
    return {"name": rr.name, "type": rr.type, "ttl": rr.ttl, "data": data}


def system_resolve(fqdn: str, qtype: str) -> dict[str, Any]:
    """Ask the system resolver (A and AAAA only), answering as a resolver plugin would."""
    family = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}.get(qtype)
    base = {"name": fqdn, "type": qtype, "answered_by": "system"}
    if family is None:
        return base | {"rcode": 4, "records": []}  # NOTIMP: the system resolver does A/AAAA
    try:
        infos = socket.getaddrinfo(fqdn.rstrip("."), None, family, socket.SOCK_STREAM)
    except socket.gaierror:
        return base | {"rcode": 3, "records": []}
    addresses = sorted({str(info[4][0]) for info in infos})
    return base | {
        "rcode": 0,
        "records": [{"name": fqdn, "type": qtype, "ttl": 0, "data": a} for a in addresses],
    }


#: Record types the host accepts from a resolver plugin, with the data length each must have
#: (None: any). The PR's host accepts A, AAAA, TXT, CNAME and ANY; we add PTR.
RECORD_DATA_LENGTH: dict[int, int | None] = {1: 4, 28: 16, 16: None, 5: None, 12: None, 255: None}


def malformed_records(response: resolver_pb2.DNSResponse) -> str:
    """Why a resolver's reply cannot be used, or "" when it can."""
    for rr in response.rrs:
        if rr.type not in RECORD_DATA_LENGTH:
            return f"record {rr.name!r} has type {rr.type}, which this host does not accept"
        want = RECORD_DATA_LENGTH[rr.type]
        if want is not None and len(rr.data) != want:
            return f"record {rr.name!r} of type {rr.type} carries {len(rr.data)} bytes, not {want}"
        if not rr.name.endswith("."):
            return f"record name {rr.name!r} is not fully qualified"
    return ""
