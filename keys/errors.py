"""The errors of the ``keys`` package: one base, leaves split by who is at fault.

Every message is the one sentence a user sees; detail goes in ``__cause__``. A caller's
own bug (a wrong argument type, a threshold below 1) is a ``ValueError`` or
``TypeError``, never one of these.
"""

from __future__ import annotations


class KeysError(Exception):
    """Base of every error the ``keys`` package raises on bad input or bad trust."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StrictJSONError(KeysError):
    """A JSON document is not strict JSON, or a field has the wrong type or is missing."""


class KeyFileError(KeysError):
    """A key file is unreadable, malformed, unencrypted when it must not be, or the
    passphrase is wrong."""


class SignatureError(KeysError):
    """A DSSE envelope is malformed, a signature is bad, or the threshold is not met."""


class TrustStoreError(KeysError):
    """The trust store file is malformed, or a requested trust change is not allowed."""
