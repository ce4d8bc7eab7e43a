"""Consent to wider capabilities: a release that asks for more than the installed version of
its plugin is never installed silently.

Why this exists: a plugin's signed `capabilities` (:mod:`loader.capabilities`) are what the
sandbox grants it. The user saw the installed release's asks; an upgrade (or an install that
replaces an installed version, a downgrade included) that widens them needs the user's yes,
as a browser extension's update that wants new permissions does. The decision is made in
two steps, both before anything is written:

1. :func:`ask_consent`, before the state root's lock is taken (a question at a terminal
   must never hold the lock a booting host waits for): every widening is allowed by
   ``allow`` (``--allow-capabilities``), or by ``ask`` (the CLI's question, given only
   when stdin is a terminal); otherwise the install is refused, naming the new asks and
   the flag. A "no" refuses too: the releases were chosen as one change (one may need
   another), so the whole change is refused and nothing is installed.
2. :func:`check_consent`, under the lock, right before the installer writes: the
   widenings are computed again against the lock as it is now, and any that the consent
   does not cover (none was asked for, or another install changed the installed version
   meanwhile) refuses the whole change.

A fresh install (the plugin is not installed) and a release of the installed version need
no consent; the installed release's asks are read from its manifest, and count as the
minimum when they cannot be read (an unsigned dev build), so anything more is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from loader.capabilities import Capabilities
from loader.home import Home
from loader.journal import reading
from loader.lockfile import Locked, read_lock
from registry_client.reading import InstallError, Release, installed_capabilities

__all__ = [
    "Ask",
    "CapabilityRefused",
    "Consent",
    "Widening",
    "ask_consent",
    "check_consent",
    "widenings",
]

#: The flag that gives consent on the command line (named in refusals).
FLAG = "--allow-capabilities"


class CapabilityRefused(InstallError):
    """A release asks for more than the installed version and was not allowed to."""


@dataclass(frozen=True)
class Widening:
    """A release that asks for more than the installed version of its plugin did."""

    name: str
    version: str
    installed: str  # the installed version
    asks: tuple[str, ...]  # what more, in words (Capabilities.beyond)

    def words(self) -> str:
        return "; ".join(self.asks)

    def question(self) -> str:
        """The question for the person at the terminal (the CLI adds "[y/N]")."""
        return (
            f"plugin {self.name} {self.version} asks for more than {self.installed}: "
            f"{self.words()}. Allow?"
        )

    def refusal(self) -> str:
        return (
            f"refusing to install {self.name} {self.version}: it asks for more than the "
            f"installed {self.installed} ({self.words()}); nothing was installed; pass "
            f"{FLAG} to allow it"
        )


#: The CLI's question: True when the person allows the widening.
Ask = Callable[[Widening], bool]


@dataclass(frozen=True)
class Consent:
    """What the user allowed: every widening (``everything``), or these asks per release."""

    everything: bool = False
    granted: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def covers(self, widening: Widening) -> bool:
        allowed = self.granted.get((widening.name, widening.version), frozenset())
        return self.everything or set(widening.asks) <= allowed


def widenings(
    home: Home, releases: Sequence[Release], locked: Mapping[str, Locked]
) -> list[Widening]:
    """The releases that would replace an installed version and ask for more than it."""
    out = []
    for release in releases:
        previous = locked.get(release.name)
        if previous is None or previous.version == release.version:
            continue
        new = release.manifest.capabilities if release.manifest else Capabilities()
        old = installed_capabilities(home, release.name, previous.version)
        asks = new.beyond(old)
        if asks:
            out.append(Widening(release.name, release.version, previous.version, tuple(asks)))
    return out


def ask_consent(
    home: Home, releases: Sequence[Release], *, allow: bool = False, ask: Ask | None = None
) -> Consent:
    """The user's consent to every widening among `releases` (step 1 above); raises
    :class:`CapabilityRefused` (one sentence) for the first one not allowed."""
    if allow:
        return Consent(everything=True)
    with reading(home):
        found = widenings(home, releases, read_lock(home.lock_file))
    granted: dict[tuple[str, str], frozenset[str]] = {}
    for widening in found:
        if ask is None:
            raise CapabilityRefused(widening.refusal())
        if not ask(widening):
            raise CapabilityRefused(
                f"refusing to install {widening.name} {widening.version}: you did not allow "
                f"what it asks beyond {widening.installed} ({widening.words()}); nothing was "
                "installed"
            )
        granted[(widening.name, widening.version)] = frozenset(widening.asks)
    return Consent(granted=granted)


def check_consent(
    home: Home,
    releases: Sequence[Release],
    locked: Mapping[str, Locked],
    consent: Consent | None,
) -> None:
    """Under the state root's lock, before anything is written (step 2 above)."""
    for widening in widenings(home, releases, locked):
        if consent is None or not consent.covers(widening):
            raise CapabilityRefused(widening.refusal())
