"""The `make demo` script runs end to end and tells the story it promises."""

from __future__ import annotations

import pytest

from sim import demo


def test_demo_runs_and_the_books_balance(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo exits 0, shows a suspension after three declines, and balances its books."""
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert out.count("declined (insufficient_funds)") == 3
    assert "bob  topup_suspended" in out
    assert "saves a new card" in out
    assert "books balance: every balance equals its ledger" in out
