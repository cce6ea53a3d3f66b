"""Tests for geco_book.profiles.resolve_profile (the notebooks' profile switch)."""

from __future__ import annotations

import doctest

import pytest

import geco_book.profiles as profiles_module
from geco_book.profiles import PROFILES, resolve_profile

TABLE = {
    "smoke": {"steps": 5, "kappas": [0.1]},
    "cpu": {"steps": 2_000, "kappas": [0.05, 0.1]},
    "gpu": {"steps": 100_000, "kappas": [0.06, 0.08, 0.1, 0.125, 0.175]},
}


def test_profiles_are_the_three_documented_ones():
    assert PROFILES == ("smoke", "cpu", "gpu")


@pytest.mark.parametrize("profile", PROFILES)
def test_returns_the_row_of_the_profile(profile):
    assert resolve_profile(profile, TABLE) == TABLE[profile]


def test_result_is_a_copy():
    settings = resolve_profile("cpu", TABLE)
    settings["steps"] = -1
    settings["new"] = True
    assert TABLE["cpu"] == {"steps": 2_000, "kappas": [0.05, 0.1]}


@pytest.mark.parametrize("bad", ["fast", "CPU", "", " cpu", None, 1])
def test_unknown_profile_lists_the_valid_ones(bad):
    with pytest.raises(ValueError) as info:
        resolve_profile(bad, TABLE)
    message = str(info.value)
    assert repr(bad) in message
    for name in PROFILES:
        assert repr(name) in message


def test_profile_missing_from_the_table():
    with pytest.raises(ValueError, match=r"'gpu' is not available here \(table defines: 'smoke', "):
        resolve_profile("gpu", {"smoke": {}, "cpu": {}})


def test_table_with_a_misspelt_profile_key():
    with pytest.raises(ValueError, match="unknown profile key"):
        resolve_profile("cpu", {"cpu": {}, "gpus": {}})


def test_bad_table_types():
    with pytest.raises(ValueError, match="table must map"):
        resolve_profile("cpu", [("cpu", {})])
    with pytest.raises(ValueError, match=r"table\['cpu'\] must be a mapping"):
        resolve_profile("cpu", {"cpu": 3})


def test_docstring_examples_run():
    result = doctest.testmod(profiles_module)
    assert result.attempted >= 3
    assert result.failed == 0
