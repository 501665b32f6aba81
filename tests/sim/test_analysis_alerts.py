"""The alerting rules replayed over a run's metrics (``sim.analysis.alerts``): the same numbers
as ``deploy/prometheus/alerts.yml``, the ``for:`` and the volume floors doing what the rules say
on hand-built metrics, and ``chaos`` raising the alerts its faults should raise and no other."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure

from sim import run
from sim.analysis.alerts import (
    ALERTS,
    HOUR,
    Alert,
    fault_windows,
    firing,
    plot_timeline,
    spells,
    summary,
    volumes,
)
from sim.world import METRICS_INTERVAL_SECONDS

from .analysis_frames import scraped
from .conftest import shipped

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
BY_NAME = {alert.name: alert for alert in ALERTS}
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0}
CHARGES = "topup_charges_total"


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _seconds(duration: str) -> float:
    """A Prometheus duration of one unit (``30m``, ``1h``, ``0m``) in seconds."""
    return float(duration[:-1]) * UNIT_SECONDS[duration[-1]]


def mismatches(rule: dict[str, Any], alert: Alert) -> list[str]:
    """Where ``alert`` says something else than the ``rule`` of the YAML: the windows of its
    ranges, its comparisons (the threshold with ``>``, then the volume floor with ``>=``), the
    quantile it reads and its ``for:``."""
    expr, found = rule["expr"], []
    windows = {_seconds(w) for w in re.findall(r"\[(\w+)\]", expr)}
    if windows != {alert.window}:
        found.append(f"windows {sorted(windows)}, not {alert.window}")
    compared = [(op, float(x)) for op, x in re.findall(r"(>=|<=|>|<|==)\s*([0-9.]+)", expr)]
    expected = [(">", alert.threshold), *([(">=", alert.floor)] if alert.floor else [])]
    if compared != expected:
        found.append(f"comparisons {compared}, not {expected}")
    quantiles = [float(q) for q in re.findall(r"histogram_quantile\(\s*([0-9.]+)", expr)]
    if quantiles != ([alert.quantile] if alert.quantile is not None else []):
        found.append(f"quantiles {quantiles}, not {alert.quantile}")
    if _seconds(rule["for"]) != alert.hold:
        found.append(f"for {rule['for']}, not {alert.hold} s")
    return found


def test_every_alert_of_the_rules_file_has_a_counterpart_with_its_numbers() -> None:
    """Same alerts in the same order; for each, the same threshold, volume floor, quantile,
    window and ``for:``. A rule changed in the YAML and not here (or back) fails."""
    rules = _rules()
    assert [rule["alert"] for rule in rules] == [alert.name for alert in ALERTS]
    assert {rule["alert"]: mismatches(rule, BY_NAME[rule["alert"]]) for rule in rules} == {
        rule["alert"]: [] for rule in rules
    }


def test_the_comparison_with_the_file_notices_each_kind_of_change() -> None:
    """A changed threshold, floor, window, quantile or ``for:`` is each reported."""
    rules = {rule["alert"]: rule for rule in _rules()}
    payments, slow = rules["TopupPaymentFailureRateHigh"], rules["TopupCreditSlow"]
    alert = BY_NAME["TopupPaymentFailureRateHigh"]
    for change in ({"threshold": 0.25}, {"floor": 30}, {"window": 600.0}, {"hold": 600.0}):
        assert mismatches(payments, dataclasses.replace(alert, **change)), change
    no_floor = {**payments, "expr": payments["expr"].replace(">= 20", ">= 25")}
    assert mismatches(no_floor, alert)
    assert mismatches(slow, dataclasses.replace(BY_NAME["TopupCreditSlow"], quantile=0.99))


def test_a_spell_starts_once_the_condition_held_for_its_duration_and_ends_when_it_breaks() -> None:
    """Samples every 5 minutes, ``for`` 10 minutes: two samples in a row (5 minutes held) stay
    pending; the third in a row fires; the spell ends at the first sample that fails; a spell
    still going ends at the last sample; ``for`` 0 fires at the first sample that holds."""
    times = [300.0 * k for k in range(10)]
    held = pd.Series([False, True, True, False, True, True, True, True, False, True], times)
    assert spells(held, 600.0) == [(1_800.0, 2_400.0)]
    assert spells(held, 0.0) == [(300.0, 900.0), (1_200.0, 2_400.0), (2_700.0, 2_700.0)]
    assert spells(held.iloc[:8], 600.0) == [(1_800.0, 2_100.0)]
    assert spells(pd.Series(False, times), 0.0) == []


def test_an_unknown_outcome_fires_five_minutes_later_and_stops_when_it_leaves_the_window() -> None:
    """One unknown outcome counted at 10 minutes: the rule holds from then until it is 30
    minutes old (at 40 minutes the window no longer holds it), and fires after its 5 minutes."""
    metrics = scraped({("topup_unknown_outcomes_total", ""): {600.0: 1.0}}, until=3_600.0)
    spelled = firing(metrics)
    assert spelled.to_dict("list") == {
        "alert": ["TopupUnknownOutcomes"], "start": [900 / HOUR], "end": [2_400 / HOUR]
    }  # fmt: skip
    table = summary(spelled)
    assert list(table.index) == [alert.name for alert in ALERTS]
    assert table.loc["TopupUnknownOutcomes"].to_dict() == {
        "fired": True, "spells": 1, "first_hour": 0.25,
        "firing_hours": pytest.approx(1_500 / HOUR),
    }  # fmt: skip
    quiet = table.drop(index="TopupUnknownOutcomes")
    assert not quiet["fired"].any() and quiet["first_hour"].isna().all()
    assert (quiet["firing_hours"] == 0).all() and (quiet["spells"] == 0).all()
    assert table.dtypes.to_dict() == {
        "fired": "bool", "spells": "int64", "first_hour": "float64", "firing_hours": "float64"
    }  # fmt: skip
    assert spelled.dtypes.astype(str).to_dict() == {
        "alert": "string", "start": "float64", "end": "float64"
    }  # fmt: skip


def _gateway(transient_at: list[float]) -> pd.DataFrame:
    """20 succeeded charge calls every 5 minutes, and 5 transient ones at ``transient_at``."""
    return scraped(
        {
            (CHARGES, 'decline_code="",outcome="succeeded"'): {300.0 * k: 20.0 for k in range(13)},
            (CHARGES, 'decline_code="",outcome="transient"'): dict.fromkeys(transient_at, 5.0),
        },
        until=3_600.0,
    )


def test_the_for_duration_holds_back_a_burst_of_gateway_errors() -> None:
    """5 errors among 45 calls hold the 10-minute rule (11%) at the two samples whose window
    sees them: not the 10 minutes its ``for:`` needs, so it never fires; without the ``for:``
    it would. Three bursts in a row hold it from 15 to 30 minutes: it fires at 25 minutes
    (10 minutes after it first held) and stops at 35."""
    gateway = BY_NAME["TopupGatewayErrors"]
    burst = _gateway([900.0])
    assert gateway.holds(burst).sum() == 2
    assert firing(burst, [gateway]).empty
    eager = firing(burst, [dataclasses.replace(gateway, hold=0.0)])
    assert eager[["start", "end"]].to_numpy().tolist() == [[900 / HOUR, 1_500 / HOUR]]
    longer = firing(_gateway([900.0, 1_200.0, 1_500.0]), [gateway])
    assert longer[["start", "end"]].to_numpy().tolist() == [[1_500 / HOUR, 2_100 / HOUR]]


def _charges(succeeded: float, declined: float) -> pd.DataFrame:
    """Card answers at 5 minutes, none after, watched for an hour."""
    return scraped(
        {
            (CHARGES, 'decline_code="",outcome="succeeded"'): {300.0: succeeded},
            (CHARGES, 'decline_code="card_declined",outcome="declined"'): {300.0: declined},
        },
        until=3_600.0,
    )


def test_the_volume_floor_keeps_2_declines_of_3_charges_quiet() -> None:
    """2 of 3 answers declined is 67%, far over 20%, but 3 answers are under the floor of 20:
    quiet. Without the floor it would fire once held 15 minutes (at 20 minutes) until the
    answers leave the 30-minute window (at 35); 30 answers with 20 declines fire the same."""
    few, payments = _charges(1, 2), BY_NAME["TopupPaymentFailureRateHigh"]
    assert firing(few, [payments]).empty
    unfloored = firing(few, [payments], floors=False)
    assert unfloored[["start", "end"]].to_numpy().tolist() == [[1_200 / HOUR, 2_100 / HOUR]]
    many = firing(_charges(10, 20), [payments])
    assert many[["start", "end"]].to_numpy().tolist() == [[1_200 / HOUR, 2_100 / HOUR]]


def _deliveries(ok: float) -> pd.DataFrame:
    """Read every 150 s: ``ok`` deliveries credited and 3 failed every 10 minutes from 10 to 50
    minutes; two dead letters of other types at 30 and 40 minutes."""
    every_10_minutes = [600.0 * k for k in range(1, 6)]
    return scraped(
        {
            ("topup_webhooks_total", 'result="credited"'): dict.fromkeys(every_10_minutes, ok),
            ("topup_webhooks_total", 'result="failed"'): dict.fromkeys(every_10_minutes, 3.0),
            ("topup_dead_letters_total", 'type="invoice.paid"'): {1_800.0: 1.0},
            ("topup_dead_letters_total", 'type="charge.refunded"'): {2_400.0: 1.0},
        },
        until=7_200.0,
        every=150.0,
    )


def test_the_volumes_beside_the_floors() -> None:
    """Per ratio rule, its window's volume beside its floor: 3 answers never reach the card
    answers' floor of 20 (6 samples of 13 see them in their window, so the median sees none);
    30 answers reach it at those 6."""
    few, many = volumes(_charges(1, 2)), volumes(_charges(10, 20))
    assert list(few.index) == [a.name for a in ALERTS if a.floor is not None]
    assert few.loc["TopupPaymentFailureRateHigh"].to_dict() == {
        "window_minutes": 30.0, "floor": 20.0, "median_volume": 0.0, "largest_volume": 3.0,
        "largest_hour": 300 / HOUR, "samples_at_floor": 0,
    }  # fmt: skip
    assert many.loc["TopupPaymentFailureRateHigh", "samples_at_floor"] == 6
    assert few.dtypes["samples_at_floor"] == "int64"
    assert many.loc["TopupWebhooksFailing", "largest_volume"] == 0.0


def test_webhook_failures_need_40_deliveries_and_dead_letters_fire_per_type() -> None:
    """3 failed deliveries in every 10 minutes: of 39, quiet; of 40 (7.5%), firing 10 minutes
    after they first held, until no delivery is left in the window (60 minutes). A dead letter
    of either type fires at once, until the last one is an hour old."""
    webhooks, dead = BY_NAME["TopupWebhooksFailing"], BY_NAME["TopupDeadLetters"]
    assert firing(_deliveries(36.0), [webhooks]).empty
    spelled = firing(_deliveries(37.0), [webhooks])
    assert spelled[["start", "end"]].to_numpy().tolist() == [[1_200 / HOUR, 3_600 / HOUR]]
    spelled = firing(_deliveries(36.0), [dead])
    assert spelled[["start", "end"]].to_numpy().tolist() == [[0.5, (2_400 + 3_600) / HOUR]]


def _credits(fast: float, slow: float) -> pd.DataFrame:
    """At 10 minutes, ``fast`` credits within a second of their claim and ``slow`` ones after 5
    to 10 minutes (the credit-delay histogram's buckets, cumulative by ``le``)."""
    buckets = {"1.0": fast, "300.0": fast, "600.0": fast + slow, "+Inf": fast + slow}
    name = "topup_credit_delay_seconds_bucket"
    return scraped({(name, f'le="{le}"'): {600.0: n} for le, n in buckets.items()}, until=3_600.0)


def test_slow_credits_fire_the_credit_rule_after_15_minutes() -> None:
    """2 slow credits of 20: the 95th percentile is past 300 s (450 s) from 10 minutes until
    the credits leave the 30-minute window, and fires 15 minutes after it first held. 1 slow
    credit of 20 is exactly 5%: the 95th percentile is 1 s, quiet."""
    spelled = firing(_credits(18, 2))
    assert spelled.to_dict("list") == {
        "alert": ["TopupCreditSlow"], "start": [1_500 / HOUR], "end": [2_400 / HOUR]
    }  # fmt: skip
    assert firing(_credits(19, 1)).empty


def test_the_fault_windows_of_chaos_and_the_timeline() -> None:
    """``chaos`` puts Stripe down from hour 48 to 50, the store from 96 to 96.5 and flushes the
    cache at hours 12 and 36; the timeline has a row per alert and names those faults."""
    scenario = shipped("chaos", days=14)
    faults = fault_windows(scenario)
    assert faults.to_numpy().tolist() == [
        ["Stripe down", 48.0, 50.0], ["store down", 96.0, 96.5],
        ["cache flushed", 12.0, 12.0], ["cache flushed", 36.0, 36.0],
    ]  # fmt: skip
    spelled = firing(scraped({("topup_unknown_outcomes_total", ""): {600.0: 1.0}}, until=3_600))
    ax = Figure().subplots()
    plot_timeline(spelled, faults, ax, hours=(0, 14 * 24), sample="chaos: 200 users, 14 days")
    assert [t.get_text() for t in ax.get_yticklabels()] == [a.name for a in ALERTS]
    assert ax.get_xlim() == (0, 336) and list(ax.get_xticks()) == [24.0 * d for d in range(15)]
    (bars,) = [c for c in ax.collections if len(c.get_paths())]  # the one spell: 15 to 40 min
    assert bars.get_paths()[0].get_extents().x0 == pytest.approx(0.25)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Stripe down", "store down", "cache flushed", "fires"
    ]  # fmt: skip
    assert "200 users, 14 days" in ax.get_title()
    close = Figure().subplots()
    plot_timeline(spelled, faults, close, hours=(46.5, 52), sample="chaos", unfloored=spelled)
    assert list(close.get_xticks()) == [47.0, 48.0, 49.0, 50.0, 51.0, 52.0]
    assert close.get_legend().get_texts()[-2].get_text() == "fires only without its floor"


def test_chaos_raises_the_alerts_its_faults_should_and_no_other() -> None:
    """``chaos`` cut to 100 users and 3 days (hour 48 to 50 without Stripe): its few charges
    (a handful in 10 minutes) stay under every ratio's floor, so the outage is seen by the
    count alerts, unknown outcomes and slow credits, which start during the outage or within
    two hours of its end; the gateway's error ratio would have held in the outage without its
    floor. Nothing in ``chaos`` forges signatures or sends events that can never apply."""
    results = run(
        shipped("chaos", users=100, days=3),
        backend="memory",
        metrics_interval=METRICS_INTERVAL_SECONDS,
    )
    metrics = results.metrics
    spelled = firing(metrics)
    table = summary(spelled)
    faults = fault_windows(results.scenario)
    (down,) = faults[faults["fault"] == "Stripe down"][["start", "end"]].to_numpy().tolist()
    for name in ("TopupUnknownOutcomes", "TopupCreditSlow"):
        starts = spelled[spelled["alert"] == name]["start"]
        assert starts.between(down[0], down[1] + 2).any(), (name, starts.tolist())
    ratios = [alert.name for alert in ALERTS if alert.floor is not None]
    assert not table.loc[ratios, "fired"].any()
    assert not table.loc[["TopupWebhooksRejected", "TopupDeadLetters"], "fired"].any()
    gateway = BY_NAME["TopupGatewayErrors"]
    unfloored = gateway.holds(metrics, floors=False)
    in_outage = (unfloored.index / HOUR).to_series().between(*down).to_numpy()
    assert unfloored[in_outage].any() and not gateway.holds(metrics)[in_outage].any()
