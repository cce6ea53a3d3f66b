"""Run profiles of the book's notebooks: ``smoke`` (CI), ``cpu`` (the rendered book), ``gpu``.

Every chapter notebook has one flat ``parameters`` cell (papermill injects overrides into it)
holding at least ``profile`` and ``seed``. The chapter keeps one table of settings per profile
and picks its row with :func:`resolve_profile`, so an unknown profile fails on the first line
that uses it, with a message listing the valid choices, instead of silently running at the
wrong scale.

- ``smoke``: seconds; every notebook runs at this profile in the test command (``ci/test.sh``).
- ``cpu``: the default and what the rendered book shows; minutes on a 2-core machine.
- ``gpu``: the paper's scale, meant for Colab or a workstation with a GPU.

Example:
    >>> from geco_book.profiles import resolve_profile
    >>> table = {"smoke": {"steps": 10}, "cpu": {"steps": 2_000}, "gpu": {"steps": 100_000}}
    >>> resolve_profile("cpu", table)
    {'steps': 2000}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["PROFILES", "resolve_profile", "settings_copy"]

#: The valid profiles, from cheapest to most expensive.
PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")


def resolve_profile(profile: str, table: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return a chapter's settings for ``profile``: a fresh ``dict`` copy of ``table[profile]``.

    Args:
        profile: one of :data:`PROFILES` (``"smoke"``, ``"cpu"``, ``"gpu"``), case-sensitive.
        table: the chapter's settings, one mapping per profile. Profiles a chapter does not
            support may be left out; asking for one of them raises.

    Returns:
        A shallow copy of ``table[profile]`` (editing it leaves the table unchanged).

    Raises:
        ValueError: ``profile`` is not a valid profile name (the message lists the valid ones),
            ``table`` has keys that are not profiles, or ``table`` has no entry for ``profile``.

    Example:
        >>> resolve_profile("smoke", {"smoke": {"n": 1}, "cpu": {"n": 100}})
        {'n': 1}
        >>> resolve_profile("fast", {"smoke": {"n": 1}})
        Traceback (most recent call last):
        ...
        ValueError: unknown profile 'fast'; valid profiles are 'smoke', 'cpu', 'gpu'
    """
    valid = ", ".join(repr(p) for p in PROFILES)
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are {valid}")
    if not isinstance(table, Mapping):
        raise ValueError(f"table must map profile names to settings, got {type(table).__name__}")
    unknown = [key for key in table if key not in PROFILES]
    if unknown:
        raise ValueError(
            f"table has unknown profile key(s) {', '.join(map(repr, unknown))}; "
            f"valid profiles are {valid}"
        )
    if profile not in table:
        have = ", ".join(repr(p) for p in PROFILES if p in table) or "none"
        raise ValueError(f"profile {profile!r} is not available here (table defines: {have})")
    settings = table[profile]
    if not isinstance(settings, Mapping):
        raise ValueError(
            f"table[{profile!r}] must be a mapping of settings, got {type(settings).__name__}"
        )
    return dict(settings)


def settings_copy(profile: str, table: Mapping[str, Mapping[str, Any]],
                  overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A chapter's settings: a deep (JSON) copy of ``table[profile]`` with ``overrides``
    applied (also deep-copied) and ``"profile"`` set to ``profile``; an override that names
    no setting is refused.

    Raises:
        ValueError: as :func:`resolve_profile`, or an unknown override key (listing the
            valid settings).

    Example:
        >>> settings_copy("cpu", {"cpu": {"n": [1, 2]}}, {"n": [3]})
        {'n': [3], 'profile': 'cpu'}
        >>> settings_copy("cpu", {"cpu": {"n": 1}}, {"m": 2})
        Traceback (most recent call last):
        ...
        ValueError: unknown setting(s) ['m']; valid settings: ['n']
    """
    out = json.loads(json.dumps(resolve_profile(profile, table)))
    unknown = sorted(set(overrides) - set(out))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid settings: {sorted(out)}")
    out.update(json.loads(json.dumps(dict(overrides))))
    out["profile"] = profile
    return out
