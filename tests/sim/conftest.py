"""Fixtures for the simulation's tests: shipped scenarios at reduced size, and small scenarios
built from a table so each test states exactly the population it needs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sim import Scenario, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SHIPPED = sorted(p.stem for p in SCENARIOS.glob("*.toml"))
#: Shipped scenarios are cut to this size in tests (the full ones run in the bench and the CLI).
REDUCED = {"users": 20, "days": 1}


def backends() -> list[str]:
    """Every backend this machine can run: a real Redis too when REDIS_URL is set."""
    return ["fakeredis", "memory", "sqlite", *(["redis"] if os.environ.get("REDIS_URL") else [])]


def shipped(name: str, **overrides: Any) -> Scenario:
    """A shipped scenario at reduced size (plus any overrides)."""
    return load_scenario(SCENARIOS / f"{name}.toml", **{**REDUCED, **overrides})


def one_group(
    usage: dict[str, Any],
    *,
    users: int = 1,
    days: float = 1,
    balance: int = 5_000,
    card: str = "pm_card_visa",
    auto_topup: dict[str, Any] | None = None,
    latency: float = 0.0,
    cooldown_hours: float = 1.0,
    faults: dict[str, Any] | None = None,
) -> Scenario:
    """A scenario with one group of identical users and a fixed payment latency."""
    raw: dict[str, Any] = {
        "name": "test",
        "users": users,
        "days": days,
        "billing": {"cooldown_hours": cooldown_hours},
        "payments": {"latency": {"dist": "fixed", "value": latency}},
        "auto_topup": {"enabled": True, "threshold": 1000, "amount": 10000, "currency": "eur"}
        | (auto_topup or {}),
        "groups": {"g": {"share": 1.0, "balance": balance, "card": card, "usage": usage}},
        "faults": faults or {},
    }
    return parse_scenario(raw, "test.toml")


@pytest.fixture
def make_scenario() -> Callable[..., Scenario]:
    """Build a one-group scenario (see :func:`one_group`)."""
    return one_group


def constant(every_seconds: float, cost: int) -> dict[str, Any]:
    """A usage table: one request of ``cost`` credits every ``every_seconds``."""
    return {
        "arrivals": "constant",
        "requests_per_day": 86_400 / every_seconds,
        "cost": {"dist": "fixed", "value": cost},
    }
