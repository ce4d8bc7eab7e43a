"""Text a plugin writes, made safe for the host's log: one record per line, nothing hidden.

Why this exists: a plugin's stderr, its go-plugin stdio stream and the messages inside its
hclog JSON lines all end up in the host's log, which the user (and other tools) read as the
host's own word. A hostile plugin that can put a newline there forges a whole log line
("INFO pm_plugins.host: plugin allowlist verified ..."); one that can put an escape
sequence there rewrites what a terminal shows. So every piece of plugin text passes here:
split into lines, every control character (and every other non-printable one) shown as an
escape, and each line cut to a bounded length that says it was cut.
"""

from __future__ import annotations

__all__ = ["MAX_RECORD_CHARS", "log_lines", "loggable"]

#: Longest plugin text one log record carries (longer text is cut and says so).
MAX_RECORD_CHARS = 2048

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char.isprintable():
        return char
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def loggable(text: str, limit: int = MAX_RECORD_CHARS) -> str:
    """`text` as one log line: control and other non-printable characters escaped
    (a backslash too, so an escape cannot be faked), at most `limit` characters of it."""
    shown = "".join(_escape(c) for c in text[:limit])
    if len(shown) <= limit and len(text) <= limit:
        return shown
    return shown[:limit] + f"... (cut at {limit} characters of {len(text)})"


def log_lines(text: str, limit: int = MAX_RECORD_CHARS) -> list[str]:
    """The lines of `text` (a stdio chunk), each made `loggable`; blank lines dropped."""
    return [loggable(line.rstrip("\r"), limit) for line in text.split("\n") if line.strip()]
