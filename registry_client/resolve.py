"""Choosing releases: requested plugins and their plugin dependencies, one version each.

Why this exists: `install hosts`, `install "hosts>=1,<2"` and `upgrade` must agree on which
release of each plugin to take, from the index's metadata alone (no download). `resolve` is
a pure function: requirements and the known releases in, a choice or one sentence out.

The algorithm is a small backtracking search (newest first), which is plenty for plugin
graphs: for each plugin it keeps the intersection of every specifier that named it, and a
conflict names both sides ("allowlist: hosts 2.0 needs allowlist<2, but you asked for
allowlist>=2"). Pre-releases are considered only with `pre=True` or when a specifier names
one explicitly, as pip does.

A yanked release (``pm-plugins index yank``) is as PEP 592 has it on PyPI: no range and no
"newest" picks it, but an exact pin (``hosts==1.2.0``, by you or by a plugin's requirement)
does, and an installed dependency at a yanked version is kept rather than moved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version


class ResolutionError(Exception):
    """No set of releases satisfies the request; one sentence saying which and why."""


@dataclass(frozen=True)
class Candidate:
    """One release of a plugin, as far as resolution cares."""

    name: str
    version: Version
    requires: tuple[tuple[str, SpecifierSet], ...] = ()
    yanked: bool = False


@dataclass(frozen=True)
class Want:
    """A constraint on a plugin and who imposed it (for the error message)."""

    spec: SpecifierSet
    by: str  # "you" or "hosts 1.2.0"


def parse_request(text: str) -> tuple[str, SpecifierSet]:
    """`hosts`, `hosts==1.2.0`, `hosts>=1,<2` -> (name, specifier)."""
    try:
        req = Requirement(text)
    except InvalidRequirement as err:
        raise ResolutionError(f"{text!r} is not a plugin name with an optional version") from err
    if req.extras or req.marker or req.url:
        raise ResolutionError(f"{text!r}: only a name and a version specifier are allowed")
    return req.name, req.specifier


def resolve(
    requests: Sequence[tuple[str, SpecifierSet]],
    available: Mapping[str, Sequence[Candidate]],
    *,
    pre: bool = False,
    installed: Mapping[str, Version] | None = None,
    constraints: Mapping[str, Sequence[Want]] | None = None,
) -> dict[str, Candidate]:
    """One release per plugin satisfying `requests` and, transitively, their requirements.

    `installed` versions are preferred when they satisfy everything (no needless upgrade
    of a dependency); requested plugins get their newest matching release. `constraints`
    (what installed plugins that stay require) narrow the choice of a plugin that is
    resolved anyway, and never add one.
    """
    wants: dict[str, list[Want]] = {}
    for name, spec in requests:
        wants.setdefault(name, []).append(Want(spec, "you"))
    requested = {name for name, _ in requests}
    limits = {n: list(w) for n, w in (constraints or {}).items()}
    chosen = _search(wants, {}, available, pre, dict(installed or {}), requested, limits)
    return chosen


def _search(
    wants: dict[str, list[Want]],
    chosen: dict[str, Candidate],
    available: Mapping[str, Sequence[Candidate]],
    pre: bool,
    installed: dict[str, Version],
    requested: set[str],
    limits: dict[str, list[Want]],
) -> dict[str, Candidate]:
    open_names = sorted(n for n in wants if n not in chosen)
    if not open_names:
        return chosen
    name = open_names[0]
    all_wants = wants[name] + limits.get(name, [])
    options = _options(name, all_wants, available, pre, installed, requested)
    last_error: ResolutionError | None = None
    for candidate in options:
        more = {n: list(w) for n, w in wants.items()}
        by = f"{candidate.name} {candidate.version}"
        conflict = None
        for dep, spec in candidate.requires:
            more.setdefault(dep, []).append(Want(spec, by))
            picked = chosen.get(dep)
            if picked is not None and not spec.contains(picked.version, prereleases=True):
                conflict = ResolutionError(
                    f"{by} needs {dep}{spec}, but {dep} {picked.version} was chosen for "
                    f"{_who(wants.get(dep, []))}"
                )
                break
        if conflict is not None:
            last_error = conflict
            continue
        try:
            return _search(
                more, {**chosen, name: candidate}, available, pre, installed, requested, limits
            )
        except ResolutionError as err:
            last_error = err
    if last_error is not None:
        raise last_error
    raise ResolutionError(_nothing_matches(name, all_wants, available, pre))


def _options(
    name: str,
    wants: list[Want],
    available: Mapping[str, Sequence[Candidate]],
    pre: bool,
    installed: dict[str, Version],
    requested: set[str],
) -> list[Candidate]:
    explicit_pre = any(s.prereleases for w in wants for s in w.spec)
    keep = installed.get(name)
    kept = keep if name not in requested else None
    matching = [
        c
        for c in available.get(name, ())
        if (pre or explicit_pre or not c.version.is_prerelease)
        and all(w.spec.contains(c.version, prereleases=True) for w in wants)
        and (not c.yanked or c.version == kept or _pinned(c.version, wants))
    ]
    matching.sort(key=lambda c: c.version, reverse=True)
    if keep is not None and name not in requested:
        matching.sort(key=lambda c: c.version != keep)  # stable: installed first, then newest
    return matching


def _pinned(version: Version, wants: list[Want]) -> bool:
    """Whether some want names exactly `version` (`==1.2.0` or `===1.2.0`, no wildcard)."""
    return any(
        s.operator in ("==", "===") and not s.version.endswith(".*") and s.contains(version, True)
        for w in wants
        for s in w.spec
    )


def _who(wants: list[Want]) -> str:
    return " and ".join(sorted({w.by for w in wants})) or "another plugin"


def _nothing_matches(
    name: str, wants: list[Want], available: Mapping[str, Sequence[Candidate]], pre: bool
) -> str:
    releases = available.get(name, ())
    if not releases:
        needed_by = _who(wants)
        if needed_by == "you":
            return f"no plugin named {name} is in the index"
        return f"{needed_by} needs {name}, which is not in the index"
    versions = ", ".join(str(c.version) for c in sorted(releases, key=lambda c: c.version))
    asked = "; ".join(f"{w.by} asked for {name}{w.spec or ' (any version)'}" for w in wants)
    fits = [c for c in releases if all(w.spec.contains(c.version, prereleases=True) for w in wants)]
    if fits and all(c.yanked for c in fits):
        newest = max(fits, key=lambda c: c.version).version
        return (
            f"every release of {name} that satisfies every request is yanked ({asked}); pin"
            f" one to take it anyway, e.g. {name}=={newest}"
        )
    if fits and not pre:
        return f"only pre-releases of {name} satisfy every request ({asked}); use --pre"
    return f"no release of {name} satisfies every request ({asked}); available: {versions}"
