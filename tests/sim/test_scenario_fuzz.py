"""The scenario loader, fuzzed: any table or file is a scenario or a ScenarioError, nothing else."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sim import ScenarioError, load_scenario, parse_scenario

from .conftest import SCENARIOS

BASE = tomllib.loads((SCENARIOS / "baseline.toml").read_text())
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
#: Dotted paths into a valid scenario, so the fuzz reaches deep validation, not just the top.
PATHS = [
    "users", "days", "start", "seed", "billing.cooldown_hours", "billing.charge_tries",
    "payments.latency", "payments.latency.dist", "auto_topup.threshold", "auto_topup.currency",
    "groups.light.share", "groups.light.cards", "groups.light.usage.cost",
    "groups.light.usage.requests_per_day", "groups.heavy.auto_topup.amount",
    "faults.gateway.rate", "faults.store.operations", "faults.cache.flush_at_hours",
    "webhooks.duplicate_rate", "sweep", "surprise",
]  # fmt: skip


def _with(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = _deep(raw)
    node = copy
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value
    return copy


def _deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep(v) for v in value]
    return value


@given(path=st.sampled_from(PATHS), value=values)
def test_any_value_anywhere_is_accepted_or_a_scenario_error(path: str, value: Any) -> None:
    """A wrong type, range, unknown key or odd unicode at any key: a ScenarioError naming it."""
    try:
        parse_scenario(_with(BASE, path, value), "fuzz.toml")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz.toml: ")


@given(table=values)
def test_any_table_is_a_scenario_error(table: Any) -> None:
    """Random JSON-like data in place of a whole scenario is refused with a ScenarioError."""
    try:
        parse_scenario(table, "fuzz.toml")
    except ScenarioError:
        return
    raise AssertionError("random data parsed as a scenario")


@given(text=st.text(max_size=200))
def test_any_file_is_a_scenario_error(tmp_path_factory: Any, text: str) -> None:
    """Any file content that is not a valid scenario is a ScenarioError naming the file."""
    path = Path(tmp_path_factory.mktemp("fuzz")) / "bad.toml"
    path.write_text(text)
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert str(exc).startswith(str(path))
