"""Symmetric-log axes labelled in plain numbers."""

from __future__ import annotations

from matplotlib.figure import Figure

from sim.analysis.scales import plain_symlog


def test_plain_symlog_ticks_zero_and_each_power_of_ten_in_plain_numbers() -> None:
    """Ticks at 0, 1, 10, ... up to the first at or above ``top``, labelled 1,000 not 10^3."""
    figure = Figure()
    ax = figure.subplots()
    _ = ax.plot([0, 900], [0, 1])
    plain_symlog(ax, "x", linthresh=1, top=900)
    figure.draw_without_rendering()
    assert ax.get_xscale() == "symlog"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "10", "100", "1,000"]
    assert ax.get_xlim() == (-0.1, 1000)


def test_plain_symlog_starts_its_ticks_at_the_linear_threshold_and_leaves_room() -> None:
    """Per 1,000 users: ticks 0, 10, 100, 1,000; ``room`` stretches the axis past the last."""
    ax = Figure().subplots()
    plain_symlog(ax, "y", linthresh=10, top=1000, room=1.5)
    assert list(ax.get_yticks()) == [0, 10, 100, 1000] and ax.get_ylim() == (-1, 1500)
