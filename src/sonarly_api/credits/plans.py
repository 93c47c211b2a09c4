"""The plans an account group can be on, and what each allows."""

from __future__ import annotations

from typing import Literal, get_args

Plan = Literal["tester", "starter", "scale", "enterprise"]

PLANS: tuple[Plan, ...] = get_args(Plan)
DEFAULT_PLAN: Plan = "starter"

# The most prospects one prospecting job may ask for (its `maxResults`).
MAX_RESULTS_CAP: dict[Plan, int] = {
    "tester": 100,
    "starter": 1000,
    "scale": 2000,
    "enterprise": 2000,
}


def parse_plan(value: str) -> Plan:
    """The plan named `value` (any case, surrounding spaces ignored); ValueError otherwise."""
    word = value.strip().lower()
    for plan in PLANS:
        if plan == word:
            return plan
    raise ValueError(f"unknown plan {value!r} (plans: {', '.join(PLANS)})")
