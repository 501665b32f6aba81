"""Strict, bounded JSON for input from outside (webhook deliveries, API bodies).

``json.loads`` alone accepts what a hostile sender can abuse: ``NaN`` and ``Infinity`` (not JSON),
``1e400`` (becomes ``inf``), nesting thousands of levels deep (``RecursionError`` deep inside
the parser) and bodies of any size. :func:`load_json` refuses each of them with
:class:`MalformedJson`, a ``ValueError`` whose message says what was wrong, before anything reads
the value.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Deepest nesting accepted. Stripe's events nest 6 levels at most (event > data > object >
#: lines > data > item > price); 64 leaves room for any object while bounding the parser's stack.
MAX_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_OPENERS, _CLOSERS = frozenset(b"[{"), frozenset(b"]}")
_NON_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class MalformedJson(ValueError):
    """Input that is not strict JSON, or is nested or sized past the bounds."""


def json_depth(raw: bytes) -> int:
    """How deep ``raw``'s arrays and objects nest (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NON_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSERS:
            depth -= 1
    return deepest


def load_json(raw: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` as strict UTF-8 JSON of at most ``max_bytes`` and ``max_depth`` levels."""
    if len(raw) > max_bytes:
        raise MalformedJson(f"the body has {len(raw)} bytes; at most {max_bytes} are accepted")
    # No body nests deeper than it has brackets: most have too few to need counting (a Stripe
    # event has about 20), and counting costs a pass over every string in the body.
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(raw) > max_depth:
        raise MalformedJson(f"the JSON nests deeper than {max_depth} levels")
    try:
        # Bytes are read as json.loads reads them (UTF-8, -16 or -32 by their first bytes).
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except MalformedJson:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and digit limits included
        raise MalformedJson(f"not JSON: {exc}") from exc


def _not_json(name: str) -> float:
    raise MalformedJson(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedJson(f"{text} is out of range")
    return value


#: One strict decoder for every body: ``json.loads`` given these hooks builds a new decoder
#: (and its scanner) on every call, a fifth of the cost of reading a webhook. Decoding keeps
#: no state between calls, as the standard library's own shared decoder does not.
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)
