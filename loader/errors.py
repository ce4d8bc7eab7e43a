"""The loader's errors: one base, split by who is at fault.

The message of each is the one sentence a user sees. A bug in the caller is a
`ValueError`/`RuntimeError`, never one of these.
"""

from __future__ import annotations


class LoaderError(Exception):
    """Base of every refusal or failure the loader reports."""
