"""The zoning rules' grammar and the class names they use: light, no raster code.

A zoning rule maps a LISA cluster and a future-trend class to a zone
(``{cluster: HH, future: '*', zone: protect}``). :func:`parse_rules` is the one parser: the
zoning stage applies what it returns (:func:`terracarbon.spatial.zoning.diagnostic_zoning`)
and the parameter check reports its problems before any stage runs
(:mod:`terracarbon.pipeline.params`). It imports only numpy and the class tables, so
checking a study's parameters does not load the spatial statistics (dask, scipy, numba).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from terracarbon.conventions import FUTURE_TREND, LISA_CLUSTER

__all__ = ["CLUSTER_CLASSES", "FUTURE_TREND_CLASSES", "RuleProblem", "parse_rules"]

CLUSTER_CLASSES: dict[int, str] = {
    code: name if code == 0 else abbreviation
    for code, name, abbreviation in zip(LISA_CLUSTER.codes, LISA_CLUSTER.names,
                                        LISA_CLUSTER.abbreviations)
}
"""LISA cluster code -> label of :func:`cluster_shares` tables: HH, LH, LL, HL and
``not_significant`` (0, also nodata); from :data:`terracarbon.conventions.LISA_CLUSTER`."""

FUTURE_TREND_CLASSES: dict[int, str] = FUTURE_TREND.as_dict()
"""Future-trend codes of ``trends.future_trend`` (0 = nodata): Sen/MK trend x Hurst
(:data:`terracarbon.conventions.FUTURE_TREND`)."""

_CLUSTER_RULE_NAMES: dict[str, int] = {
    **{label: code for code, label in CLUSTER_CLASSES.items()},
    "NS": LISA_CLUSTER.code_of("NS"),
}
"""Names a zoning rule may give for ``cluster``: the table labels and NS."""


class RuleProblem(NamedTuple):
    """One problem of a zoning rule list: rule index (None: the list), field, value, expected."""

    index: int | None
    field: str | None
    value: Any
    expected: str


def _rule_code(value: Any, names: dict[str, int]) -> int | None | RuleProblem:
    if value == "*":
        return None
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value in set(
        names.values()
    ):
        return int(value)
    return RuleProblem(None, None, value, f"expected '*' or one of {sorted(names)}")


def parse_rules(rules: Any, future_names: dict[str, int] | None = None
                ) -> tuple[list[tuple[int | None, int | None, int]], list[str], list[RuleProblem]]:
    """The one grammar of zoning rules: parsed rules, zone names, and every problem.

    Parameters
    ----------
    rules : list of dict
        ``{"cluster": ..., "future": ..., "zone": ...}`` as :func:`diagnostic_zoning` takes.
    future_names : dict, optional
        Future-trend class name -> code (default :data:`FUTURE_TREND_CLASSES`).

    Returns
    -------
    parsed : list of (cluster code or None, future code or None, zone number)
        ``None`` matches anything; zone 0 is "other", 1.. the zone names in order.
    zone_names : list of str
    problems : list of RuleProblem
        Empty when the rules are valid (the parameter check reports them all up front).
    """
    future_names = future_names or {v: k for k, v in FUTURE_TREND_CLASSES.items()}
    if not isinstance(rules, list) or not rules:
        return [], [], [RuleProblem(None, None, rules, "expected a non-empty list of dicts "
                                    "with keys 'cluster', 'future', 'zone'")]
    parsed, zone_names, problems = [], [], []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or set(rule) != {"cluster", "future", "zone"}:
            problems.append(RuleProblem(i, None, rule, "expected a dict with exactly the "
                                        "keys 'cluster', 'future', 'zone'"))
            continue
        zone = rule["zone"]
        if not isinstance(zone, str) or not zone or zone == "nodata":
            problems.append(RuleProblem(i, "zone", zone, "expected a non-empty name"))
            continue
        codes = []
        for field, names in (("cluster", _CLUSTER_RULE_NAMES), ("future", future_names)):
            code = _rule_code(rule[field], names)
            if isinstance(code, RuleProblem):
                problems.append(code._replace(index=i, field=field))
            codes.append(code)
        if zone != "other" and zone not in zone_names:
            zone_names.append(zone)
        parsed.append((*codes, 0 if zone == "other" else zone_names.index(zone) + 1))
    return parsed, zone_names, problems
