"""Stripe's error envelope helpers."""

from __future__ import annotations

import gc

import pytest

from sim.stripe_emulator._errors import StripeAPIError, invalid_request, raise_if


def test_raise_if_raises_what_it_is_given_and_leaves_no_reference_cycle() -> None:
    """``None`` raises nothing; an error is raised as it is, and once it is handled nothing is
    left for the cyclic collector (a frame that raises an error it holds would be: the error's
    traceback holds the frame, and the frame the error)."""
    raise_if(None)
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(StripeAPIError, match="No such thing") as caught:
            raise_if(invalid_request("No such thing.", param="thing"))
        assert caught.value.error["param"] == "thing"
        del caught
        assert gc.collect() == 0
    finally:
        gc.enable()
