"""Reading a run's metrics as the alerting rules do: increases over windows, the failure rate."""

from __future__ import annotations

import math

import pandas as pd

from sim import run
from sim.analysis.monitoring import failure_rate, increase, labels_of
from sim.world import METRICS_INTERVAL_SECONDS

from .conftest import shipped


def _frame(rows: list[tuple[float, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=["time", "name", "labels", "value"])


CHARGES = _frame([
    (0.0, "topup_charges_total", 'decline_code="",outcome="succeeded"', 1.0),
    (300.0, "topup_charges_total", 'decline_code="",outcome="succeeded"', 4.0),
    (300.0, "topup_charges_total", 'decline_code="expired_card",outcome="declined"', 1.0),
    (600.0, "topup_charges_total", 'decline_code="",outcome="succeeded"', 6.0),
    (600.0, "topup_charges_total", 'decline_code="expired_card",outcome="declined"', 1.0),
    (600.0, "topup_charges_total", 'decline_code="lost_card",outcome="declined"', 2.0),
    (600.0, "topup_webhooks_total", 'result="failed"', 9.0),
])  # fmt: skip


def test_labels_are_read_back_into_a_dict() -> None:
    """The labels column's text, as ``Results.metrics`` writes it."""
    assert labels_of('decline_code="",outcome="declined"') == {
        "decline_code": "",
        "outcome": "declined",
    }


def test_increase_over_a_window_per_label_and_summed() -> None:
    """Per outcome and summed; a series not yet counted counts 0; ``where`` selects series."""
    by = increase(CHARGES, "topup_charges_total", 300.0, by="outcome")
    assert by.to_dict("list") == {"declined": [0.0, 1.0, 2.0], "succeeded": [1.0, 3.0, 2.0]}
    summed = increase(CHARGES, "topup_charges_total", 600.0)
    assert summed.tolist() == [1.0, 5.0, 8.0]  # 9 counted by 600, 1 of them by 0
    codes = increase(CHARGES, "topup_charges_total", 600.0, where={"outcome": "declined"})
    assert codes.tolist() == [0.0, 1.0, 3.0]
    assert increase(CHARGES, "topup_dead_letters_total", 600.0).tolist() == [0.0, 0.0, 0.0]


def test_failure_rate_leaves_windows_without_answers_undefined() -> None:
    """Declines over every card answer in the window; NaN where there was none."""
    rate = failure_rate(CHARGES, window=300.0)
    assert rate.tolist()[:2] == [0.0, 0.25] and rate.iloc[2] == 0.5
    quiet = _frame([(0.0, "topup_webhooks_total", 'result="failed"', 0.0)])
    assert math.isnan(failure_rate(quiet).iloc[0])


def test_a_chaos_run_read_over_time_adds_up_to_its_totals() -> None:
    """Over the whole run, the increases equal the last values of the counters."""
    results = run(shipped("chaos"), backend="memory", metrics_interval=METRICS_INTERVAL_SECONDS)
    metrics = results.metrics
    end = metrics["time"].max()
    whole = increase(metrics, "topup_charges_total", end + 1, by="outcome").iloc[-1]
    last = metrics[(metrics["time"] == end) & (metrics["name"] == "topup_charges_total")]
    assert whole.sum() == last["value"].sum() > 0
    assert failure_rate(metrics).dropna().between(0, 1).all()
