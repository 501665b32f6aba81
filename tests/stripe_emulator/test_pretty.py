"""Webhook payloads are written exactly as ``json.dumps(value, indent=2)`` writes them."""

from __future__ import annotations

import enum
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.stripe_emulator import _pretty
from sim.stripe_emulator._pretty import pretty_json

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)  # fmt: skip
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(_JSON)
def test_pretty_json_is_json_dumps_indented_by_two(value: object) -> None:
    """Any JSON value (NaN, infinities, non-ASCII text, empty and nested containers included)
    gives the same text as the standard library's pretty printer."""
    assert pretty_json(value) == json.dumps(value, indent=2)


class _Level(enum.IntEnum):
    LOW = 1


class _Name(enum.StrEnum):
    A = "a"


def test_tuples_and_scalar_subclasses_are_written_as_json_writes_them() -> None:
    """Tuples are lists; an IntEnum is its number and a str enum its text, as in json.dumps."""
    value = {"t": (1, "x"), "level": _Level.LOW, "name": _Name.A, "deep": [[{}], []]}
    assert pretty_json(value) == json.dumps(value, indent=2)


@pytest.mark.parametrize("value", [{1: "a"}, {"k": object()}, [b"bytes"]])
def test_what_json_cannot_hold_is_a_type_error(value: object) -> None:
    """A non-string key or a value JSON has no type for is refused, not written half."""
    with pytest.raises(TypeError):
        pretty_json(value)


def test_keys_with_percent_signs_are_written_as_they_are() -> None:
    """An object's frame is a ``%`` template: a ``%`` in a key is text, never a placeholder."""
    value = {"a%s": 1, "%": {"%d%%": "x"}, "b": "%s"}
    assert pretty_json(value) == json.dumps(value, indent=2)


def test_an_object_is_written_the_same_the_second_time() -> None:
    """The frame kept from the first object of a shape serves the next one, at any depth."""
    first, second = {"id": "a", "n": 1}, {"id": "b", "n": None}
    for value in (first, second, [first], [second], {"x": [second]}):
        assert pretty_json(value) == json.dumps(value, indent=2)


def test_frames_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shapes come from clients (metadata keys): past the bound they are written, not kept."""
    monkeypatch.setattr(_pretty, "_FRAMES", {})
    for n in range(_pretty.MAX_FRAMES + 10):
        value = {f"k{n}": n}
        assert pretty_json(value) == json.dumps(value, indent=2)
    assert len(_pretty._FRAMES) == _pretty.MAX_FRAMES
