"""Scenario files: every shipped one loads, and a bad one is refused with file, key and allowed."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from sim import ScenarioError, load_scenario
from sim.billing import BillingConfig

from .conftest import SCENARIOS, SHIPPED, one_group, shipped


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


BASE = """
users = 10
days = 1
[groups.g]
share = 1.0
balance = 100
[groups.g.usage]
requests_per_day = 10
cost = { dist = "fixed", value = 5 }
"""


def test_every_shipped_scenario_loads_and_is_commented() -> None:
    """Each file in scenarios/ validates and starts with a comment saying what it is."""
    assert set(SHIPPED) >= {"baseline", "cooldown_stress", "card_failures", "chaos"}
    for name in SHIPPED:
        path = SCENARIOS / f"{name}.toml"
        assert path.read_text().startswith(f"# {name}:")
        assert load_scenario(path).name == name


def test_baseline_has_the_documented_size() -> None:
    """The baseline is 1,000 users over 30 days in three groups."""
    scenario = load_scenario(SCENARIOS / "baseline.toml")
    assert (scenario.users, scenario.days) == (1000, 30)
    assert [g.name for g in scenario.groups] == ["light", "regular", "heavy"]


def test_unknown_key_names_file_key_and_allowed(tmp_path: Path) -> None:
    """A typo is an error naming the file, the dotted key and the keys allowed there."""
    path = _write(tmp_path, BASE + "[groups.g.usage2]\n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: groups\.g\.usage2: unknown key"):
        load_scenario(path)
    path = _write(tmp_path, "colldown = 1\n" + BASE)
    with pytest.raises(ScenarioError, match=r"colldown: unknown key; allowed here: .*users"):
        load_scenario(path)


def test_bad_value_lists_what_is_allowed(tmp_path: Path) -> None:
    """An out-of-range setting names its key and the allowed values."""
    path = _write(tmp_path, BASE + "[auto_topup]\nthreshold = 750\n")
    with pytest.raises(
        ScenarioError, match=r"auto_topup\.threshold: 750 is not allowed; allowed: 500"
    ):
        load_scenario(path)


def test_wrong_type_is_refused(tmp_path: Path) -> None:
    """A string where a number belongs is refused with the expected type."""
    path = _write(tmp_path, BASE.replace("users = 10", 'users = "ten"'))
    with pytest.raises(ScenarioError, match=r"users: must be a whole number"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("days = inf", r"bad\.toml: days: must be a finite number, got inf"),
        ("days = nan", r"bad\.toml: days: must be a finite number, got nan"),
        ("days = 1" + "0" * 400, r"bad\.toml: days: must be a finite number, got 1000"),
        ("days = 367", r"bad\.toml: days: must be <= 366, got 367"),
        ("users = 1000001", r"bad\.toml: users: must be <= 1000000, got 1000001"),
        ("[billing]\ncooldown_hours = -inf", r"billing\.cooldown_hours: must be a finite number"),
    ],
)
def test_numbers_no_run_can_mean_are_refused_at_their_key(
    tmp_path: Path, line: str, message: str
) -> None:
    """TOML's inf and nan, integers past a float's range (TOML reads them whole) and runs past a
    year or a million users are errors naming the key; a fuzzed ``days = 1e9`` had unrolled its
    daily schedules over every day and taken all of the machine's memory, and ``inf`` raised
    ``OverflowError``."""
    if line.startswith("["):  # a table's key: the table goes at the end
        text = BASE + line
    else:  # a top-level key: in place of the base's own line
        key = line.split(" = ")[0]
        text = "\n".join(line if old.startswith(f"{key} = ") else old for old in BASE.split("\n"))
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_the_longest_and_largest_run_a_file_may_ask_for_loads() -> None:
    """The bounds themselves are accepted: a year, a million users."""
    scenario = shipped("baseline").with_overrides({"days": 366, "users": 1_000_000})
    assert (scenario.days, scenario.users) == (366.0, 1_000_000)


def test_unknown_card_and_bad_shares_are_refused() -> None:
    """Cards must be Stripe test cards; group shares must sum to 1."""
    with pytest.raises(ScenarioError, match=r"groups\.g\.card: .*allowed: .*'pm_card_visa'"):
        one_group({"requests_per_day": 1, "cost": {"dist": "fixed", "value": 1}}, card="pm_x")
    scenario = shipped("baseline")
    with pytest.raises(ScenarioError, match=r"groups: shares must sum to 1"):
        scenario.with_overrides({"groups.light.share": 0.5})


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML is refused with its name."""
    with pytest.raises(ScenarioError, match=r"bad\.toml: <syntax>"):
        load_scenario(_write(tmp_path, "users = = 1"))


def test_overrides_are_validated_again() -> None:
    """Dotted overrides replace keys and pass through the same validation."""
    scenario = shipped("baseline").with_overrides({"auto_topup.threshold": 2000})
    assert {g.settings.threshold for g in scenario.groups} == {2000, 5000}
    with pytest.raises(ScenarioError, match=r"billing\.cooldown_hours: must be >= 0"):
        scenario.with_overrides({"billing.cooldown_hours": -1})


def test_counts_apportion_users_by_share() -> None:
    """Group sizes follow the shares and always add up to the user count."""
    scenario = shipped("baseline", users=7)
    assert scenario.counts() == [4, 2, 1]
    assert sum(shipped("baseline", users=1000).counts()) == 1000


def test_sweep_values_are_checked_up_front(tmp_path: Path) -> None:
    """Every value of a [sweep] key is validated when the file loads."""
    path = _write(tmp_path, BASE + '[sweep]\n"auto_topup.amount" = [1000, 1234]\n')
    with pytest.raises(ScenarioError, match=r"auto_topup\.amount: 1234 is not allowed"):
        load_scenario(path)


def test_grid_point_drops_the_sweep() -> None:
    """A grid point is the scenario with the override and without its [sweep] table."""
    grid = load_scenario(SCENARIOS / "threshold_grid.toml")
    point = grid.grid_point({"auto_topup.threshold": 500})
    assert point.sweep == {} and point.groups[0].settings.threshold == 500


def test_start_needs_a_time_zone() -> None:
    """A start time without a zone would depend on the machine's clock settings: refused."""
    scenario = shipped("baseline")
    assert scenario.with_overrides({"start": "2026-01-01T01:00:00+01:00"}).start == 1_767_225_600
    with pytest.raises(ScenarioError, match=r"start: '2026-01-01T00:00:00': allowed: an ISO"):
        scenario.with_overrides({"start": "2026-01-01T00:00:00"})


def test_every_billing_setting_is_reachable_from_a_scenario() -> None:
    """Each ``BillingConfig`` field can be set in ``[billing]`` and reaches the config a world
    builds (the cooldown in hours); left out, each is ``BillingConfig``'s own default."""
    names = {f.name for f in fields(BillingConfig)}
    chosen = {
        "cooldown_hours": 2.0, "charge_tries": 5, "failures_before_suspension": 4,
        "attempt_lease_seconds": 120.0, "retry_backoff_seconds": 0.5,
        "idempotency_window_seconds": 3_600.0,
    }  # fmt: skip
    scenario = one_group({"requests_per_day": 1, "cost": {"dist": "fixed", "value": 1}})
    config = scenario.with_overrides(
        {f"billing.{k}": v for k, v in chosen.items()}
    ).billing.config()
    expected = {("cooldown_seconds" if k == "cooldown_hours" else k): v for k, v in chosen.items()}
    expected["cooldown_seconds"] = 7_200.0
    assert set(expected) == names
    assert {name: getattr(config, name) for name in names} == expected
    plain = shipped("baseline").with_overrides({"billing": {}}).billing.config()
    assert plain == BillingConfig()


def test_a_callers_seed_meets_the_files_rule() -> None:
    """``seeded`` puts a caller's seed in place by the rule of the file's ``seed``: the scenario
    itself for none or its own, a whole number >= 0 (NumPy's integers too, as a seed read from a
    frame is one), and the file's one-line error for anything else (a bool is no seed)."""
    scenario = shipped("baseline")
    assert scenario.seeded(None) is scenario and scenario.seeded(scenario.seed) is scenario
    reseeded = scenario.seeded(np.int64(7))
    assert (reseeded.seed, type(reseeded.seed), reseeded.users) == (7, int, scenario.users)
    for bad, said in [
        (-1, "must be >= 0"),
        (True, "must be a whole number"),
        (1.5, "must be a whole"),
    ]:
        with pytest.raises(ScenarioError, match=f"baseline.toml: seed: {said}"):
            scenario.seeded(bad)  # type: ignore[arg-type]
