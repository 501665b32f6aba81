"""Auto top-up settings validation."""

from __future__ import annotations

import pytest

from sim.billing import AutoTopupSettings, InvalidSettings
from sim.billing.settings import MAX_MONTHLY_LIMIT


def test_defaults_are_valid_and_off() -> None:
    """The defaults name a priced tier and leave auto top-up off."""
    settings = AutoTopupSettings()
    assert (settings.enabled, settings.threshold, settings.amount, settings.currency) == (
        False, 1_000, 10_000, "eur",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "kwargs", "allowed"),
    [
        ("threshold", {"threshold": 100}, (500, 1000, 2000, 5000)),
        ("threshold", {"threshold": True}, (500, 1000, 2000, 5000)),
        ("threshold", {"threshold": "1000"}, (500, 1000, 2000, 5000)),
        ("amount", {"amount": 5_000}, (1000, 10000, 21000, 54000)),
        ("amount", {"amount": 110_000}, (1000, 10000, 21000, 54000)),
        ("currency", {"currency": "gbp"}, ("eur", "usd", "jpy")),
        ("currency", {"currency": "EUR"}, ("eur", "usd", "jpy")),
        ("enabled", {"enabled": 1}, (True, False)),
    ],
)
def test_invalid_value_names_field_and_allowed_values(
    field: str, kwargs: dict[str, object], allowed: tuple[object, ...]
) -> None:
    """Each out-of-range setting raises InvalidSettings naming the field and what it allows."""
    with pytest.raises(InvalidSettings) as caught:
        AutoTopupSettings(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.allowed == allowed
    shown = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in allowed)
    assert str(caught.value).startswith(f"invalid {field}: ")
    assert str(caught.value).endswith(f"; allowed: {shown}")


def test_monthly_limit_is_off_by_default_and_takes_whole_credits() -> None:
    """No limit unless one is chosen; a limit is whole credits from one top-up of the amount up
    to the ceiling, so a limited setting can still top up."""
    assert AutoTopupSettings().monthly_limit is None
    assert AutoTopupSettings(amount=10_000, monthly_limit=10_000).monthly_limit == 10_000
    assert AutoTopupSettings(monthly_limit=MAX_MONTHLY_LIMIT).monthly_limit == MAX_MONTHLY_LIMIT


@pytest.mark.parametrize(
    "limit", [0, -1, 9_999, MAX_MONTHLY_LIMIT + 1, True, "20000", 20_000.0, 10**30]
)
def test_bad_monthly_limit_is_a_typed_one_line_error(limit: object) -> None:
    """Below the amount (it would hold every top-up), past the ceiling, or not a whole number:
    ``InvalidSettings`` naming the field, with ``null`` (no limit) and the range allowed."""
    with pytest.raises(InvalidSettings) as caught:
        AutoTopupSettings(amount=10_000, monthly_limit=limit)  # type: ignore[arg-type]
    assert caught.value.field == "monthly_limit"
    assert caught.value.allowed == (None, f"10000..{MAX_MONTHLY_LIMIT}")
    assert str(caught.value) == (
        f"invalid monthly_limit: {limit!r}; allowed: null, 10000..{MAX_MONTHLY_LIMIT}"
    )
