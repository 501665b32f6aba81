"""Reading a run's metrics as the alerting rules do: increases over windows, volumes, shares,
the failure rate and a histogram's quantile."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sim import run
from sim.analysis.monitoring import (
    failure_rate,
    histogram_quantile,
    increase,
    labels_of,
    share,
    total,
)
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


def test_volumes_and_shares_over_some_label_values() -> None:
    """``total`` sums the series named (a label value never counted adds 0); ``share`` divides
    a part by the whole or by the values named; nothing counted is NaN, not 0."""
    answers = total(CHARGES, "topup_charges_total", 300.0, by="outcome", of=("declined", "none"))
    assert answers.tolist() == [0.0, 1.0, 2.0]
    assert total(CHARGES, "topup_charges_total", 300.0).tolist() == [1.0, 4.0, 4.0]
    declined = share(CHARGES, "topup_charges_total", 300.0, by="outcome", part=("declined",))
    assert declined.iloc[1:].tolist() == [0.25, 0.5] and declined.iloc[0] == 0.0
    of_none = share(CHARGES, "topup_charges_total", 300.0, by="outcome", part=("x",), of=("y",))
    assert of_none.isna().all()


def _buckets(counts: dict[str, float]) -> pd.DataFrame:
    """A credit-delay histogram at 0 at time 0 and at ``counts`` (cumulative, by ``le``) at
    time 300."""
    return _frame([
        (time, "topup_credit_delay_seconds_bucket", f'le="{le}"', value if time else 0.0)
        for time in (0.0, 300.0) for le, value in counts.items()
    ])  # fmt: skip


def test_histogram_quantile_interpolates_in_its_bucket_as_promql_does() -> None:
    """9 credits within a second and 1 between 300 and 600 s: the median is 5/9 of the way
    through the first bucket (from 0), the 95th percentile half way through (300, 600] (the
    figures promtool 2.42 gives for the same buckets); past the largest finite bound it is that
    bound; with nothing observed it is undefined."""
    name = "topup_credit_delay_seconds"
    slow = _buckets({"1.0": 9, "300.0": 9, "600.0": 10, "+Inf": 10})
    assert histogram_quantile(slow, name, 0.95, 300.0).iloc[1] == 450.0
    assert histogram_quantile(slow, name, 0.5, 300.0).iloc[1] == pytest.approx(5 / 9)
    past = _buckets({"1.0": 9, "300.0": 9, "600.0": 9, "+Inf": 10})
    assert histogram_quantile(past, name, 0.95, 300.0).iloc[1] == 600.0
    assert histogram_quantile(past, name, 0.95, 300.0).isna().iloc[0]  # nothing observed yet
    assert histogram_quantile(CHARGES, name, 0.95, 300.0).isna().all()  # no histogram at all


def test_a_chaos_run_read_over_time_adds_up_to_its_totals() -> None:
    """Over the whole run, the increases equal the last values of the counters."""
    results = run(shipped("chaos"), backend="memory", metrics_interval=METRICS_INTERVAL_SECONDS)
    metrics = results.metrics
    end = metrics["time"].max()
    whole = increase(metrics, "topup_charges_total", end + 1, by="outcome").iloc[-1]
    last = metrics[(metrics["time"] == end) & (metrics["name"] == "topup_charges_total")]
    assert whole.sum() == last["value"].sum() > 0
    assert failure_rate(metrics).dropna().between(0, 1).all()
