"""The one error ``index`` raises for a refusal a maintainer must see: :class:`IndexRepoError`.

Every message is one sentence naming the repository, role, plugin or file at fault; the
detail (a TUF or OS exception) travels in ``__cause__``. A caller's own programming error
(a wrong argument type) stays a ``ValueError``/``TypeError``.
"""

from __future__ import annotations


class IndexRepoError(Exception):
    """A maintainer command cannot be done; the message says why in one sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
