"""What a plugin may do beyond its own data folder: the `[capabilities]` it declares and signs.

Why this exists: the sandbox (host.sandbox) grants a plugin only what its signed manifest
asks for, and the user should read those asks before install and before an upgrade that
widens them, as browser extensions show theirs. One definition serves `plugin.toml`, the
signed manifest, the lock-step consent check and the words `install`, `info` and `status`
print. No declaration means the minimum: no files beyond its own release and data folder, no
network, no child processes.

    [capabilities]
    read = ["/etc/hosts"]          # files or folders it may read
    write = ["/var/lib/thing"]     # files or folders it may read and write
    network = ["tcp:443", "udp:53"]  # or "any"; none when absent
    processes = false              # whether it may start child processes
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keys.errors import StrictJSONError
from loader.fields import check_unknown, expect, show

__all__ = ["FIELDS", "Capabilities", "parse_capabilities"]

FIELDS = ("read", "write", "network", "processes")
#: Most paths a plugin may declare in `read` or `write`, and longest path.
MAX_PATHS = 32
MAX_PATH_BYTES = 1024
#: The one network entry that means every destination.
ANY = "any"
_PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class Capabilities:
    """A plugin's declared reach; the default is the minimum."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    network: tuple[str, ...] = ()  # () none, ("any",), or "tcp:443"/"udp:53" entries
    processes: bool = False

    @property
    def network_any(self) -> bool:
        return ANY in self.network

    def ports(self, protocol: str) -> tuple[int, ...]:
        """The declared ports of `protocol` ("tcp" or "udp")."""
        return tuple(int(e.split(":")[1]) for e in self.network if e.startswith(protocol + ":"))

    def to_json(self) -> dict[str, Any]:
        return {
            "read": list(self.read),
            "write": list(self.write),
            "network": list(self.network),
            "processes": self.processes,
        }

    def is_minimum(self) -> bool:
        return self == Capabilities()

    def describe(self) -> list[str]:
        """The asks in words, one line each (the minimum in one line)."""
        if self.is_minimum():
            return ["nothing beyond its own data folder: no other files, no network, no processes"]
        lines = [f"read {p}" for p in self.read] + [f"read and write {p}" for p in self.write]
        lines.append(f"network: {_network_words(self.network)}")
        lines.append("may start child processes" if self.processes else "no child processes")
        return lines

    def beyond(self, installed: Capabilities) -> list[str]:
        """What this release asks for that `installed` did not, in words ([] = nothing more)."""
        more: list[str] = []
        for path in self.read:
            if not _covered(path, installed.read + installed.write):
                more.append(f"read {path}")
        for path in self.write:
            if not _covered(path, installed.write):
                more.append(f"read and write {path}")
        if not installed.network_any:
            added = [e for e in self.network if e not in installed.network]
            if added:
                more.append(f"network: {_network_words(tuple(added))}")
        if self.processes and not installed.processes:
            more.append("start child processes")
        return more


def _network_words(entries: tuple[str, ...]) -> str:
    if not entries:
        return "none"
    if ANY in entries:
        return "any destination"
    return ", ".join(f"{e.split(':')[0].upper()} port {e.split(':')[1]}" for e in entries)


def _covered(path: str, granted: tuple[str, ...]) -> bool:
    return any(path == g or path.startswith(g.rstrip("/") + "/") for g in granted)


def parse_capabilities(obj: Any, *, where: str) -> Capabilities:
    """The `capabilities` table of plugin.toml or a manifest; refuses in one sentence."""
    expect(obj, dict, where=where, what='field "capabilities"')
    assert isinstance(obj, Mapping)
    check_unknown(obj, FIELDS, where=where, what='field "capabilities"')
    read = _paths(obj.get("read", []), where=where, what='"capabilities.read"')
    write = _paths(obj.get("write", []), where=where, what='"capabilities.write"')
    network = _network(obj.get("network", []), where=where)
    processes = obj.get("processes", False)
    expect(processes, bool, where=where, what='field "capabilities.processes"')
    return Capabilities(read, write, network, bool(processes))


def _paths(value: Any, *, where: str, what: str) -> tuple[str, ...]:
    expect(value, list, where=where, what=f"field {what}")
    if len(value) > MAX_PATHS:
        raise StrictJSONError(f"{where}: field {what} lists more than {MAX_PATHS} paths")
    out: list[str] = []
    for i, item in enumerate(value, 1):
        expect(item, str, where=where, what=f"item {i} of field {what}")
        text = str(item)
        bad = (
            not text.startswith("/")
            or text == "/"
            or text.startswith("//")  # POSIX leaves a leading "//" to the system
            or posixpath.normpath(text) != text
            or not text.isprintable()
            or len(text.encode()) > MAX_PATH_BYTES
        )
        if bad:
            raise StrictJSONError(
                f"{where}: field {what} names {show(text)}, which is not a plain absolute path"
                " (no '..', no trailing '/', not '/' itself)"
            )
        if text not in out:
            out.append(text)
    return tuple(out)


def _network(value: Any, *, where: str) -> tuple[str, ...]:
    what = 'field "capabilities.network"'
    if value == ANY:
        return (ANY,)
    if value == "none":
        return ()
    expect(value, list, where=where, what=what)
    out: dict[str, None] = {}  # ordered, and a repeated entry costs no scan
    for item in value:
        text = item if isinstance(item, str) else ""
        proto, _, port = text.partition(":")
        # ASCII digits only: "²".isdigit() is true and int("²") raises
        plain = port.isascii() and port.isdigit() and len(port) <= 5
        number = int(port) if plain and port == str(int(port)) else 0
        ok = text == ANY or (proto in _PROTOCOLS and 0 < number < 2**16)
        if not ok:
            entries = '"any", "tcp:PORT" or "udp:PORT"'
            raise StrictJSONError(f"{where}: {what} has {show(str(item))}; entries are {entries}")
        out[text] = None
    return (ANY,) if ANY in out else tuple(out)
