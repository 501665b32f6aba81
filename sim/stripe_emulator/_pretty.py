"""Webhook payloads as Stripe sends them: JSON indented by two spaces, written fast.

Stripe's webhook bodies are pretty-printed, and a receiver must verify the signature over those
exact bytes (re-encoding the JSON first is a classic bug that compact bodies would hide), so the
emulator sends them the same way. ``json.dumps(value, indent=2)`` writes them in pure Python:
the C encoder does not indent. It was the largest single cost of an auto top-up in a sweep.
:func:`pretty_json` writes the same text several times faster. A property test holds it equal to
``json.dumps(value, indent=2)``.

Why it is shaped as it is: the emulator writes the same few kinds of object over and over (a
PaymentIntent has the same fifty keys in the same order every time), so each object's frame -- its
keys, indentation and separators -- is built once per shape (its keys and depth) as a ``%``
template, and an object is then its values' texts put into the template by one C call. Values are
written by type with the C encoder's own string function; nested containers recurse.
"""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _string
from typing import Any

_INDENTS: list[str] = []

#: Object frames by ``(depth, keys)``: a ``%s`` per value. Bounded, because metadata keys come
#: from clients: past the bound a new shape's frame is built for the object and not kept.
_FRAMES: dict[tuple[int, tuple[str, ...]], str] = {}
MAX_FRAMES = 4096


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


_SCALARS: dict[type, Callable[[Any], str]] = {
    str: _string,
    int: int.__repr__,
    float: _float,
    bool: lambda value: "true" if value else "false",
    type(None): lambda value: "null",
}


def pretty_json(value: Any) -> str:
    """``value`` as ``json.dumps(value, indent=2)`` writes it (dict keys must be strings)."""
    return _encode(value, 0)


def _indent(level: int) -> str:
    while len(_INDENTS) <= level:
        _INDENTS.append("\n" + "  " * len(_INDENTS))
    return _INDENTS[level]


def _encode(value: Any, level: int) -> str:
    if type(value) is dict:
        return _object(value, level)
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        return scalar(value)
    if isinstance(value, dict):
        return _object(value, level)
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        inner, deeper = _indent(level + 1), level + 1
        items = [_encode(item, deeper) for item in value]
        return "[" + inner + ("," + inner).join(items) + _indent(level) + "]"
    for kind in (bool, int, float, str):  # subclasses (an IntEnum, a str Enum) as json does
        if isinstance(value, kind):
            return _SCALARS[kind](value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _object(value: dict[str, Any], level: int) -> str:
    """A non-empty object: its frame filled with its values' texts (the common scalars inline,
    a function call each being most of their cost)."""
    if not value:
        return "{}"
    keys = tuple(value)
    frame = _FRAMES.get((level, keys)) or _frame(level, keys)
    deeper = level + 1
    texts = []
    for item in value.values():
        kind = type(item)
        if kind is str:
            texts.append(_string(item))
        elif item is None:
            texts.append("null")
        elif kind is int:
            texts.append(int.__repr__(item))
        elif kind is bool:
            texts.append("true" if item else "false")
        elif kind is dict:
            texts.append(_object(item, deeper))
        else:
            texts.append(_encode(item, deeper))
    return frame % tuple(texts)


def _frame(level: int, keys: tuple[str, ...]) -> str:
    """The ``%`` template of an object with ``keys`` at depth ``level`` (kept while the table
    has room)."""
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__}")
    inner = _indent(level + 1)
    members = [inner + _string(key).replace("%", "%%") + ": %s" for key in keys]
    frame = "{" + ",".join(members) + _indent(level) + "}"
    if len(_FRAMES) < MAX_FRAMES:
        _FRAMES[level, keys] = frame
    return frame
