"""Strict, bounded JSON: depth counted outside strings, the size bound exact, non-JSON refused."""

from __future__ import annotations

import pytest

from sim.billing.json_limits import MalformedJson, json_depth, load_json


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b"[][][]", 1),
        (b'{"a": [1, {"b": "[[[{{{"}]}', 3),
        (b"[[]][[[]]]", 3),
        (b'["\\"[[[", []]', 2),
    ],
)
def test_depth_counts_nesting_outside_strings(raw: bytes, depth: int) -> None:
    """Brackets inside strings (escaped quotes included) do not count; closing one level
    returns to the level before."""
    assert json_depth(raw) == depth


def test_size_bound_is_inclusive() -> None:
    """A body of exactly ``max_bytes`` is read; one byte more is refused, saying both sizes."""
    assert load_json(b"[1234]", max_bytes=6) == [1234]
    with pytest.raises(MalformedJson, match=r"^the body has 7 bytes; at most 6 are accepted$"):
        load_json(b"[12345]", max_bytes=6)


def test_depth_bound_is_inclusive() -> None:
    """Nesting of exactly ``max_depth`` levels is read; one more is refused."""
    assert load_json(b"[[1]]", max_bytes=100, max_depth=2) == [[1]]
    with pytest.raises(MalformedJson, match="deeper than 2 levels"):
        load_json(b"[[[1]]]", max_bytes=100, max_depth=2)


def test_brackets_in_strings_never_refuse_a_shallow_body() -> None:
    """More brackets than ``max_depth`` inside strings, two levels of real nesting: read (the
    bracket count only decides whether the depth needs counting); the same count of real
    brackets, and mixed ``{``/``[`` nesting one past the bound, are refused."""
    shallow = b'[{"k": "' + b"[{" * 40 + b'"}]'
    assert load_json(shallow, max_bytes=1_000, max_depth=2) == [{"k": "[{" * 40}]
    with pytest.raises(MalformedJson, match="deeper than 2 levels"):
        load_json(b'[{"a": [1]}]', max_bytes=100, max_depth=2)
    assert load_json(b'{"a": [1]}', max_bytes=100, max_depth=2) == {"a": [1]}
