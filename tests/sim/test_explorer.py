"""The review explorer (``sim.explorer``): from a review table and the controls' values to the
chosen setting's figures, the heat maps and the recommendation, without a browser; then the
widgets wired to it."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sim import explorer
from sim.explorer import Controls, choices, fit, parse_limit, view
from sim.review_data import GRID_SEGMENT, SEGMENTS, ReviewData

from .conftest import SCENARIOS

LIGHT = SEGMENTS[10]


def _table() -> pd.DataFrame:
    """Two segments, threshold x amount (500, 2,000 x 1,000, 10,000); the grid's population at
    two cooldowns, the light segment at one. At 1 h the grid's population runs dry least at
    2,000/1,000 (10, 5 to 15) but tops up 9 times a month there; 500/10,000 (40, 30 to 50) tops
    up twice."""
    rows = []
    for segment, cooldowns in ((GRID_SEGMENT, (0.5, 1.0)), (LIGHT, (1.0,))):
        for cooldown in cooldowns:
            for (threshold, amount), dry, topups in zip(
                [(500, 1000), (500, 10000), (2000, 1000), (2000, 10000)],
                [100.0, 40.0, 10.0, 80.0], [8.0, 2.0, 9.0, 2.5], strict=True,
            ):  # fmt: skip
                rows.append({
                    "segment": segment, "threshold": threshold, "amount": amount,
                    "cooldown_hours": cooldown, "dry_per_1000_users": dry,
                    "dry_per_1000_users_ci_low": dry - 10, "dry_per_1000_users_ci_high": dry + 10,
                    "dry_hours_per_user": 0.25, "dry_hours_per_user_ci_low": 0.0,
                    "dry_hours_per_user_ci_high": 0.5, "left_per_1000_users": 3.0,
                    "left_per_1000_users_ci_low": 1.0, "left_per_1000_users_ci_high": 9.0,
                    "topups_per_user_month": topups,
                    "topups_per_user_month_ci_low": topups - 0.5,
                    "topups_per_user_month_ci_high": topups + 0.5,
                    "failed_per_1000_month": 12.0, "revenue_per_1000_month": 45_000.0,
                    "users": 100, "days": 30.0,
                })  # fmt: skip
    return pd.DataFrame(rows)


def test_choices_are_the_segments_own_settings() -> None:
    """The grid's population has two cooldowns; the light segment only the one it was run at."""
    table = _table()
    assert choices(table, GRID_SEGMENT)["cooldown_hours"] == [0.5, 1.0]
    assert choices(table, LIGHT) == {
        "threshold": [500, 2000], "amount": [1000, 10000], "cooldown_hours": [1.0],
    }  # fmt: skip


def test_fit_keeps_what_the_new_segment_has_and_moves_the_rest_to_the_nearest() -> None:
    """Half an hour of cooldown does not exist for the light segment: 1 h is the nearest."""
    fitted = fit(_table(), Controls(LIGHT, 2000, 1000, 0.5))
    assert (fitted.threshold, fitted.amount, fitted.cooldown_hours) == (2000, 1000, 1.0)


def test_the_chosen_settings_figures_carry_their_intervals_and_sample_size() -> None:
    """Each figure in words with its interval; figures without one stand alone."""
    shown = view(_table(), Controls(GRID_SEGMENT, 500, 10_000, 1.0), "eur")
    assert shown.figures.set_index("figure")["value"].to_dict() == {
        "Users who ran dry (users per 1,000)": "40 (30 to 50)",
        "Hours dry (hours per user)": "0.25 (0.00 to 0.50)",
        "Users who left (users per 1,000)": "3 (1 to 9)",
        "Top-ups (per user per month)": "2.0 (1.5 to 2.5)",
        "Failed charges (per 1,000 users per month)": "12",
        "Revenue (EUR per 1,000 users per month)": "45,000",
    }
    assert shown.size == "100 users x 30 days"


def test_the_recommendation_follows_the_rules_limit() -> None:
    """At most 4 top-ups a month rules out 2,000/1,000 (9 a month) and the rule picks
    500/10,000; at most 10 a month allows it, and it wins outright."""
    strict = view(_table(), Controls(GRID_SEGMENT, 500, 1000, 1.0), "eur")
    loose = view(_table(), Controls(GRID_SEGMENT, 500, 1000, 1.0, max_topups_per_month=10), "eur")
    assert strict.recommendation.startswith(
        f"{GRID_SEGMENT}, 1 h cooldown: top up below 500 credits, buy 10,000 credits: 40 dry"
    )
    assert loose.recommendation.startswith(
        f"{GRID_SEGMENT}, 1 h cooldown: top up below 2,000 credits, buy 1,000 credits: 10 dry"
    )
    assert "at most 10 top-ups per user per month" in loose.rule
    assert "Beats the next setting by 30" in loose.recommendation


def test_a_failed_charge_limit_nobody_meets_is_said() -> None:
    """Every setting fails 12 charges per 1,000 a month: a limit of 5 is met by none."""
    controls = Controls(LIGHT, 500, 1000, 1.0, max_failed_per_1000_month=5)
    assert "No setting meets the limits" in view(_table(), controls, "eur").recommendation


def test_the_figure_stars_the_choice_hatches_what_breaks_the_limits_and_frames_the_setting(
) -> None:  # fmt: skip
    """Under 4 top-ups a month, 500/1,000 and 2,000/1,000 are over the limit (hatched on both
    maps); the star is at 500/10,000 (x 1, y 0) and the dashed frame at 2,000/10,000."""
    figure = view(_table(), Controls(GRID_SEGMENT, 2000, 10_000, 1.0), "eur").figure
    objective, topups, _, _ = figure.axes  # then their colour bars
    for ax in (objective, topups):
        hatched = sorted(p.get_xy() for p in ax.patches if p.get_hatch())
        assert hatched == [(-0.5, -0.5), (-0.5, 0.5)]
        assert [p.get_xy() for p in ax.patches if p.get_linestyle() == "--"] == [(0.55, 0.55)]
    (star,) = objective.lines
    assert (round(star.get_xdata()[0]), round(star.get_ydata()[0])) == (1, 0)
    assert "100 users x 30 days per setting" in objective.get_title()
    assert explorer.png(figure).startswith(b"\x89PNG")


def test_a_slice_the_data_lacks_is_refused() -> None:
    """A cooldown the segment was not run at is an error, not an empty figure."""
    with pytest.raises(ValueError, match="no data for"):
        view(_table(), Controls(LIGHT, 500, 1000, 4.0), "eur")


@pytest.mark.parametrize(("text", "limit"), [("", math.inf), (" 10 ", 10.0), ("1,000", 1000.0)])
def test_parse_limit_reads_numbers_and_empty_as_none(text: str, limit: float) -> None:
    assert parse_limit(text) == limit


@pytest.mark.parametrize("text", ["-1", "many", "nan"])
def test_parse_limit_refuses_what_is_not_a_limit(text: str) -> None:
    with pytest.raises(ValueError):
        parse_limit(text)


@pytest.fixture
def page() -> explorer.Explorer:
    """The explorer's widgets on the hand-built table (no kernel, no browser)."""
    table = _table()
    data = ReviewData(table[table["segment"] == GRID_SEGMENT], table[table["segment"] == LIGHT],
                      {"currency": "eur", "seed": 5})  # fmt: skip
    return explorer.Explorer(data, SCENARIOS / "threshold_grid.toml")


def test_changing_a_limit_updates_the_recommendation_and_the_image(
    page: explorer.Explorer,
) -> None:
    """Raising the top-up limit to 10 moves the recommendation and redraws the figure."""
    advice, image = page.advice.value, page.image.value
    assert "top up below 500 credits, buy 10,000 credits" in advice
    page.max_topups.value = 10
    assert "top up below 2,000 credits, buy 1,000 credits" in page.advice.value
    assert page.image.value != image and page.image.value.startswith("<img src='data:image/png")


def test_changing_segment_fits_the_settings_and_locks_a_single_cooldown(
    page: explorer.Explorer,
) -> None:
    """The light segment has one cooldown: the control shows it and cannot be changed; the
    threshold chosen before stays."""
    page.threshold.value = 2000
    page.cooldown.value = 0.5
    page.segment.value = LIGHT
    assert page.cooldown.options == (("1", 1.0),) and page.cooldown.disabled
    assert page.controls() == Controls(LIGHT, 2000, 10_000, 1.0)
    assert LIGHT in page.advice.value


def test_a_limit_that_is_not_a_number_is_said_in_the_page(page: explorer.Explorer) -> None:
    page.max_failed.value = "many"
    assert "could not convert string to float" in page.advice.value


def test_the_button_runs_the_point_and_shows_its_figures(page: explorer.Explorer) -> None:
    """A fresh run (here called in place of its thread) fills the progress bar, says it is
    done and shows its figures with the size it ran at."""
    page._run_point(page.controls(), 3, 1)
    assert page.status.value == "done: 3 users x 1 days"
    assert page.progress.value == 1
    assert "3 users x 1 days per setting" in page.fresh.value
    assert "Users who ran dry (users per 1,000)" in page.fresh.value
    assert not page.button.disabled


def test_the_text_form_is_one_stable_line(page: explorer.Explorer) -> None:
    """nbval compares text: the explorer's is one line that no run changes."""
    bundle = page._repr_mimebundle_()
    assert bundle["text/plain"] == "Explorer of 12 saved points"
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_figures_html_escapes_and_states_the_size() -> None:
    figures = pd.DataFrame({"figure": ["a < b"], "value": ["1 (0 to 2)"]})
    text = explorer.figures_html(figures, "3 users x 1 days")
    assert "a &lt; b" in text and "3 users x 1 days per setting" in text
