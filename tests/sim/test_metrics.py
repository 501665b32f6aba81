"""A run reads the billing's Prometheus metrics as a scrape would: ``Results.metrics`` holds
them over time, and they agree with the event log written beside them."""

from __future__ import annotations

import pandas as pd

from sim import run
from sim.billing.metrics import METRIC_NAMES
from sim.world import METRICS_INTERVAL_SECONDS, SETTLE_SECONDS

from .conftest import shipped


def _final(metrics: pd.DataFrame, name: str, labels: str = "") -> float:
    last = metrics[metrics["time"] == metrics["time"].max()]
    found = last[(last["name"] == name) & (last["labels"] == labels)]["value"]
    return float(found.sum())


def test_a_run_exposes_its_metrics_over_time_agreeing_with_its_events() -> None:
    """Samples every 5 simulated minutes to the end; the last ones count what the event log
    shows: requests served and refused, claims, charges by outcome."""
    results = run(shipped("chaos"), backend="memory", metrics_interval=METRICS_INTERVAL_SECONDS)
    metrics, events = results.metrics, results.events
    times = sorted(metrics["time"].unique())
    assert times[1] - times[0] == METRICS_INTERVAL_SECONDS
    horizon = results.scenario.horizon
    assert times[-1] >= horizon + SETTLE_SECONDS - 3_600
    names = set(metrics["name"].astype(str))
    histogram = "topup_credit_delay_seconds"
    exported = {*METRIC_NAMES, *(f"{histogram}_{part}" for part in ("bucket", "sum", "count"))}
    assert names <= exported
    assert {"topup_deductions_total", "topup_charges_total", f"{histogram}_bucket"} <= names
    kinds = events["kind"].value_counts()
    # A worker that dies after its deduction committed counts no deduction; the world logs the
    # request served (its credits were taken) and the crash.
    served = _final(metrics, "topup_deductions_total", 'result="served"')
    assert served <= kinds["request"] <= served + kinds.get("crash", 0)
    refused = _final(metrics, "topup_deductions_total", 'result="refused"')
    assert refused <= kinds.get("refused", 0) <= refused + kinds.get("crash", 0)
    claimed = (events["trigger"] == "claimed").sum()
    assert _final(metrics, "topup_triggers_total", 'kind="claimed"') >= claimed > 0
    charges = events[events["kind"] == "charge"]["outcome"].value_counts()
    counted = metrics[(metrics["time"] == times[-1]) & (metrics["name"] == "topup_charges_total")]
    by_outcome = counted.groupby(counted["labels"].astype(str).str.extract(r'outcome="(\w+)"')[0])[
        "value"
    ].sum()
    assert by_outcome.get("succeeded", 0) == charges.get("succeeded", 0) > 0
    assert by_outcome.get("declined", 0) == charges.get("declined", 0) > 0
    assert by_outcome.get("transient", 0) == charges.get("transient", 0)
    # A counter never goes down between samples.
    for key, series in metrics.groupby(["name", "labels"], observed=True)["value"]:
        assert (series.diff().dropna() >= 0).all(), key


def test_by_default_a_run_reads_its_metrics_once_at_the_end() -> None:
    """Without an interval the metrics are read once, after the settling: the run pays nothing
    for them while it runs."""
    results = run(shipped("webhook_outage"), backend="memory")
    assert results.metrics["time"].nunique() == 1
    assert results.metrics["time"].iloc[0] >= results.scenario.horizon + SETTLE_SECONDS - 3_600
    served = results.metrics[results.metrics["labels"] == 'result="served"']["value"]
    assert served.sum() == (results.events["kind"] == "request").sum()
