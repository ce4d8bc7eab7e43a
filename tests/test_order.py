"""Start order from dependencies: levels, cycles, and modules that cannot start."""

from __future__ import annotations

import pytest

from loader.order import DependencyCycleError, find_cycle, start_levels, unsatisfied


def test_levels_put_dependencies_first_and_independents_together() -> None:
    deps = {
        "config": [],
        "notifications": ["config"],
        "firewall": ["config"],
        "resolver": ["config"],
        "hosts": ["resolver"],
        "allowlist": ["firewall"],
        "history": ["firewall", "notifications"],
    }
    levels = start_levels(deps)
    assert levels == [
        ["config"],
        ["firewall", "notifications", "resolver"],
        ["allowlist", "history", "hosts"],
    ]


def test_cycle_is_named() -> None:
    deps = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    assert find_cycle(deps) == ["a", "b", "c", "a"]
    with pytest.raises(DependencyCycleError, match=r"a -> b -> c -> a"):
        start_levels(deps)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(DependencyCycleError, match=r"x -> x"):
        start_levels({"x": ["x"]})


def test_unsatisfied_is_transitive_and_says_why() -> None:
    deps = {
        "spn": [],
        "tunnel-stats": ["spn"],
        "dashboard": ["tunnel-stats"],
        "ghost-user": ["ghost"],
        "fine": [],
    }
    blocked = unsatisfied(deps, {"spn": "is disabled"})
    assert blocked == {
        "tunnel-stats": "it needs spn, which is disabled",
        "dashboard": "it needs tunnel-stats, which cannot start",
        "ghost-user": "it needs ghost, which is not installed or not a module",
    }


def test_unknown_dependencies_do_not_break_ordering() -> None:
    assert start_levels({"a": ["missing"], "b": ["a"]}) == [["a"], ["b"]]


def test_a_cycle_reads_as_needs_from_its_smallest_name() -> None:
    # z needs a, a needs m, m needs z: whatever graphlib starts from, the reason reads the same
    deps = {"z": ["a"], "a": ["m"], "m": ["z"], "free": ["a"]}
    assert find_cycle(deps) == ["a", "m", "z", "a"]
    assert find_cycle({"m": ["z"], "z": ["a"], "a": ["m"]}) == ["a", "m", "z", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None
