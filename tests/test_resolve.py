"""Resolution of plugin requests to one release each, from metadata alone."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from registry_client.resolve import Candidate, ResolutionError, parse_request, resolve


def c(name: str, version: str, **requires: str) -> Candidate:
    return Candidate(
        name, Version(version), tuple((k, SpecifierSet(v)) for k, v in requires.items())
    )


INDEX = {
    "hosts": [c("hosts", "1.0.0"), c("hosts", "1.2.0"), c("hosts", "2.0.0", allowlist="<2")],
    "allowlist": [c("allowlist", "1.5.0"), c("allowlist", "2.1.0"), c("allowlist", "3.0rc1")],
    "history": [c("history", "1.0.0", hosts=">=1.2,<2")],
}


def chosen(*requests: str, pre: bool = False, **installed: str) -> dict[str, str]:
    got = resolve(
        [parse_request(r) for r in requests],
        INDEX,
        pre=pre,
        installed={k: Version(v) for k, v in installed.items()},
    )
    return {name: str(cand.version) for name, cand in got.items()}


def test_newest_release_and_its_dependencies() -> None:
    assert chosen("hosts") == {"hosts": "2.0.0", "allowlist": "1.5.0"}


@pytest.mark.parametrize(
    ("request_text", "version"),
    [("hosts==1.2.0", "1.2.0"), ("hosts>=1,<2", "1.2.0"), ("hosts<1.2", "1.0.0")],
)
def test_specifiers(request_text: str, version: str) -> None:
    assert chosen(request_text)["hosts"] == version


def test_pre_releases_only_when_asked() -> None:
    assert chosen("allowlist") == {"allowlist": "2.1.0"}
    assert chosen("allowlist", pre=True) == {"allowlist": "3.0rc1"}
    assert chosen("allowlist>=3.0rc1") == {"allowlist": "3.0rc1"}


def test_backtracks_to_an_older_release_that_fits() -> None:
    assert chosen("hosts", "allowlist>=2") == {"hosts": "1.2.0", "allowlist": "2.1.0"}


def test_transitive_dependency_constrains_the_request() -> None:
    assert chosen("history", "hosts") == {"history": "1.0.0", "hosts": "1.2.0"}


def test_installed_dependency_is_kept_when_it_fits() -> None:
    assert chosen("history", hosts="1.0.0") == {"history": "1.0.0", "hosts": "1.2.0"}
    assert chosen("hosts", allowlist="1.5.0")["allowlist"] == "1.5.0"


def test_a_conflict_is_one_sentence_naming_both_sides() -> None:
    with pytest.raises(ResolutionError) as err:
        chosen("history", "hosts>=2")
    text = str(err.value)
    assert "\n" not in text
    assert "hosts" in text and "you asked for hosts>=2" in text
    assert "history 1.0.0 asked for hosts<2,>=1.2" in text


def test_unknown_plugin_and_bad_request() -> None:
    with pytest.raises(ResolutionError, match="no plugin named nope is in the index"):
        chosen("nope")
    with pytest.raises(ResolutionError, match="is not a plugin name"):
        parse_request("hosts>>1")
    with pytest.raises(ResolutionError, match="no release of hosts satisfies"):
        chosen("hosts>5")
    with pytest.raises(ResolutionError, match="use --pre"):
        chosen("allowlist>2.5")
