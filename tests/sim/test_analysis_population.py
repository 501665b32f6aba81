"""The population table: who a scenario's users are, group by group."""

from __future__ import annotations

from sim.analysis import population

from .conftest import shipped


def test_groups_table_gives_each_groups_users_settings_and_usage() -> None:
    """Shares become user counts; good cards are the share of cards that pay."""
    scenario = shipped("baseline", users=100)
    table = population.groups_table(scenario)
    assert table["users"].to_dict() == {"light": 60, "regular": 30, "heavy": 10}
    assert table.loc["heavy", "amount"] == 54_000 and table.loc["light", "good_card_pct"] == 98
