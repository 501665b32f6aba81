"""Strict, bounded JSON: depth counted outside strings, the size bound exact, non-JSON refused."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32-be"])
def test_bodies_are_read_in_every_encoding_json_reads(encoding: str) -> None:
    """Bytes are decoded as ``json.loads`` decodes them: UTF-8, -16 or -32, told by their first
    bytes."""
    body = '{"a": ["é", 1.5, null]}'.encode(encoding)
    assert load_json(body, max_bytes=1_000) == json.loads(body) == {"a": ["é", 1.5, None]}


def test_a_surrogate_escaped_in_utf8_reads_as_json_loads_reads_it() -> None:
    """UTF-8 bytes of a lone surrogate pass as ``json.loads`` lets them; bytes that are no text
    at all are malformed."""
    assert load_json(b'"\xed\xa0\x80"', max_bytes=100) == json.loads(b'"\xed\xa0\x80"')
    with pytest.raises(MalformedJson, match=r"^not JSON"):
        load_json(b'{"a": "\xff"}', max_bytes=100)
