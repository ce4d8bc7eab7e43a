"""What an install may replace: pinned publishers, versions that only go up, releases that
never change, and the requirements of the plugins that stay.

Why this exists: every single check of a release (signature, trust, hashes) can pass while
the change between two releases is the attack: another trusted key publishing a release of
a name it never signed, or an older release with a known hole. The lock (`plugins.lock`)
records the keys that signed each installed release; a new release of that plugin must be
signed by at least one of them, else it is refused with one sentence naming the old and the
new signers, unless the user allows it (`--allow-new-signer`, or a yes at a terminal). A
release older than the installed one is a downgrade: refused without `--allow-downgrade`.

As with capability consent (:mod:`registry_client.consent`), the question is asked before the
state root's lock is taken (:func:`ask_permission`), and the refusals are computed again under
the lock (:func:`refuse_replacing`), where the answer given must still cover them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from loader.home import Home
from loader.host_modules import CORE_MODULES
from loader.journal import reading
from loader.lockfile import Locked, read_lock
from registry_client.reading import InstallError, Release, installed_requirements

__all__ = [
    "NEW_SIGNER_FLAG",
    "Permission",
    "Replacing",
    "SignerChange",
    "ask_permission",
    "is_downgrade",
    "keeps_signer",
    "refuse_replacing",
    "signer_changes",
]

NEW_SIGNER_FLAG = "--allow-new-signer"
DOWNGRADE_FLAG = "--allow-downgrade"


class ReplaceRefused(InstallError):
    """A release would replace an installed one in a way the user did not allow."""


@dataclass(frozen=True)
class SignerChange:
    """A release signed by none of the keys that signed the installed release."""

    name: str
    version: str
    installed: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    new_level: str | None

    def words(self) -> str:
        new = ", ".join(f"{k[:12]}..." for k in self.new) or "no key (unsigned)"
        level = f" ({self.new_level})" if self.new and self.new_level else ""
        old = ", ".join(f"{k[:12]}..." for k in self.old)
        return (
            f"{self.name} {self.version} is signed by {new}{level}, not by {old}, which "
            f"signed the installed {self.installed}"
        )

    def question(self) -> str:
        return f"{self.words()}. Has {self.name} really changed hands? Install it anyway?"


#: Asks the person at the terminal about one signer change; True allows it.
Ask = Callable[[SignerChange], bool]


@dataclass(frozen=True)
class Permission:
    """What the user allowed: downgrades, and new signers for these plugin names."""

    downgrade: bool = False
    new_signer: frozenset[str] = field(default_factory=frozenset)
    any_new_signer: bool = False

    def allows(self, change: SignerChange) -> bool:
        return self.any_new_signer or change.name in self.new_signer


@dataclass(frozen=True)
class Replacing:
    """The user's flags for an install, and the terminal's question (None: no terminal)."""

    downgrade: bool = False
    new_signer: bool = False
    ask: Ask | None = None

    def ask_about(self, home: Home, releases: Sequence[Release]) -> Permission:
        return ask_permission(
            home, releases, downgrade=self.downgrade, new_signer=self.new_signer, ask=self.ask
        )


def keeps_signer(release: Release, previous: Locked | None) -> bool:
    """Whether `release` is signed by a key that signed `previous` (or nothing is pinned:
    not installed, or installed unsigned)."""
    if previous is None or not previous.signers:
        return True
    return bool(
        set(release.key_ids or ((release.key_id,) if release.key_id else ()))
        & set(previous.signers)
    )


def signer_changes(releases: Sequence[Release], locked: Mapping[str, Locked]) -> list[SignerChange]:
    """The releases signed by none of the keys pinned for their plugin."""
    out = []
    for release in releases:
        previous = locked.get(release.name)
        if previous is None or keeps_signer(release, previous):
            continue
        new = release.key_ids or ((release.key_id,) if release.key_id else ())
        out.append(
            SignerChange(
                release.name,
                release.version,
                previous.version,
                previous.signers,
                tuple(new),
                release.trust_level,
            )
        )
    return out


def is_downgrade(version: str, installed: str) -> bool:
    try:
        return Version(version) < Version(installed)
    except InvalidVersion:
        return False


def ask_permission(
    home: Home,
    releases: Sequence[Release],
    *,
    downgrade: bool = False,
    new_signer: bool = False,
    ask: Ask | None = None,
) -> Permission:
    """Before the state root's lock: ask about each signer change not allowed by the flag
    (`new_signer`); a "no" refuses the whole change."""
    if new_signer:
        return Permission(downgrade, any_new_signer=True)
    with reading(home):
        found = signer_changes(releases, read_lock(home.lock_file))
    allowed = set()
    for change in found:
        if ask is None:
            break  # refused, with the flag named, by refuse_replacing
        if not ask(change):
            raise ReplaceRefused(
                f"refusing to install {change.name} {change.version}: you did not allow "
                f"its new signer; nothing was installed"
            )
        allowed.add(change.name)
    return Permission(downgrade, frozenset(allowed))


def refuse_replacing(
    home: Home, releases: Sequence[Release], locked: Mapping[str, Locked], allowed: Permission
) -> None:
    """The refusals of an install, each one sentence, under the state root's lock and before
    anything is written."""
    for release in releases:
        previous = locked.get(release.name)
        if release.name in CORE_MODULES:
            raise InstallError(
                f"refusing to install {release.name}: it has the name of a host module"
            )
        if previous is None:
            continue
        if is_downgrade(release.version, previous.version) and not allowed.downgrade:
            raise ReplaceRefused(
                f"refusing to downgrade {release.name} from {previous.version} to "
                f"{release.version}: pass {DOWNGRADE_FLAG} to install an older release"
            )
    for change in signer_changes(releases, locked):
        if not allowed.allows(change):
            raise ReplaceRefused(
                f"refusing to install {change.words()}: pass {NEW_SIGNER_FLAG} if the plugin "
                "really changed hands"
            )
    _refuse_broken_requirements(home, releases)


def _refuse_broken_requirements(home: Home, releases: Sequence[Release]) -> None:
    new_versions = {r.name: r.version for r in releases}
    for other, (version, requires) in installed_requirements(home).items():
        if other in new_versions:
            continue
        for dep, spec in requires:
            if dep not in new_versions:
                continue
            try:
                fits = spec.contains(Version(new_versions[dep]), prereleases=True)
            except InvalidVersion:
                fits = False
            if not fits:
                raise InstallError(
                    f"installing {dep} {new_versions[dep]} would break {other} {version}, "
                    f"which needs {dep}{spec}; upgrade or uninstall {other} first"
                )
