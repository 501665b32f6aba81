"""Stripe's bracket form encoding: ``a[b][0][c]=x`` <-> nested dicts and lists.

:func:`encode` writes a body as ``stripe-python`` does (for a client that sends without the
library, such as the simulation's direct requester); :func:`decode` reads what any client sends.

Stripe's v1 API takes ``application/x-www-form-urlencoded`` bodies (and query strings) whose keys
nest with brackets; ``stripe-python`` writes lists as ``key[0]``, other clients as ``key[]`` (and
``items[][price]=a&items[][quantity]=2`` for a list of hashes). All of these decode to Python lists
here. Values stay strings: each endpoint coerces what it reads (see ``_params``).

Input that cannot be read is refused with Stripe's 400 ``invalid_request_error`` rather than
guessed at or allowed to crash the emulator: a malformed percent-escape, percent-escaped bytes that
are not UTF-8, a malformed bracket key, a scalar and a hash under one name, or nesting deeper than
:data:`MAX_DEPTH` (a key thousands of brackets deep would otherwise exhaust the interpreter's
recursion when the answer is built). A scalar key given twice keeps its last value, as Stripe's
form parser does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes, urlencode

from ._errors import invalid_request
from ._params import whole_number

#: Deepest bracket nesting accepted (Stripe's own parameters nest five levels at most).
MAX_DEPTH = 32

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def encode(params: Mapping[str, Any]) -> str:
    """``params`` as a form body: hashes as ``a[b]``, lists as ``a[0]``, booleans as ``true`` and
    ``false``, ``None`` left out, brackets unescaped (as ``stripe-python`` writes them)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _flatten(pairs, key, value)
    return urlencode(pairs).replace("%5B", "[").replace("%5D", "]")


def form_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`decode` reads from :func:`encode`'s text of ``params``, built directly: every
    value a string (booleans ``true``/``false``), ``None`` left out, empty hashes and lists gone
    (they write no pair). For a client in this process that skips the text."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        read = value if type(value) is str else _value(value)  # most are strings: no call
        if read is not None:
            out[key] = read
    return out


def _value(value: Any) -> Any:
    # Strings, numbers and flags are most values: read by exact type first, because the
    # ``Mapping`` check below is an ABC's, and slow (subclasses still take the general path).
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return None
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, Mapping):
        read = form_values(value)
        if read and all(whole_number(key) is not None for key in read):
            return [read[key] for key in sorted(read, key=int)]  # as decode lists a[0], a[1]
        return read or None
    if isinstance(value, list | tuple):
        items = [item for item in map(_value, value) if item is not None]
        return items or None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flatten(pairs: list[tuple[str, str]], key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for sub, item in value.items():
            _flatten(pairs, f"{key}[{sub}]", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _flatten(pairs, f"{key}[{index}]", item)
    elif isinstance(value, bool):
        pairs.append((key, "true" if value else "false"))
    else:
        pairs.append((key, str(value)))


def decode(encoded: str) -> dict[str, Any]:
    """Decode a form body or query string into nested dicts/lists of strings."""
    root: dict[str, Any] = {}
    nested = False
    if not encoded:
        return root
    for pair in encoded.split("&"):
        key, _, value = pair.partition("=")
        # Hot path (every request): unquote only what needs it; stripe-python leaves brackets raw.
        if "%" in key or "+" in key:
            key = _unquote(key)
        if "%" in value or "+" in value:
            value = _unquote(value)
        if not key:
            continue
        if "[" not in key and "]" not in key:
            root[key] = value
            continue
        nested = True
        _put(root, key, value)
    if nested:
        for key, value in root.items():
            if isinstance(value, dict):
                root[key] = _listify(value)
    return root


def _unquote(text: str) -> str:
    """Percent-decode ``text`` (``+`` is a space), strictly: bad escapes and non-UTF-8 refused."""
    if _BAD_ESCAPE.search(text):
        raise invalid_request(f"Invalid percent-encoding in the request: {text[:100]!r}.")
    try:
        return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_request(
            f"Invalid request: percent-encoded bytes that are not UTF-8 in {text[:100]!r}."
        ) from None


def _put(root: dict[str, Any], key: str, value: str) -> None:
    """Store ``value`` under the bracket key ``key`` (lists as index-keyed dicts for now)."""
    head, _, rest = key.partition("[")
    if not head or not rest.endswith("]"):
        raise invalid_request(f"Invalid parameter name: {key[:100]}", param=head or None)
    segments = rest[:-1].split("][")
    if len(segments) > MAX_DEPTH:
        raise invalid_request(
            f"Parameter nesting is too deep: {head} nests more than {MAX_DEPTH} levels.",
            param=head,
        )
    if any("[" in segment or "]" in segment for segment in segments):
        raise invalid_request(f"Invalid parameter name: {key[:100]}", param=head)
    node = root
    name = head
    last_index = len(segments) - 1
    for i, segment in enumerate(segments):
        child = node.get(name)
        if child is None:
            child = node[name] = {}
        elif not isinstance(child, dict):
            raise invalid_request(f"Invalid nesting for parameter: {key[:100]}", param=head)
        node = child
        if segment == "":
            # ``a[]=x`` appends; ``a[][b]=x`` fills the list's last hash until a key repeats in
            # it, then starts a new one (Rack's rule, which Stripe's parser follows).
            segment = str(len(node))
            if i < last_index and node:
                last = node.get(str(len(node) - 1))
                if isinstance(last, dict) and not _holds(last, segments[i + 1 :]):
                    segment = str(len(node) - 1)
        name = segment
    node[name] = value


def _holds(node: dict[str, Any], path: list[str]) -> bool:
    """Whether ``node`` already has a value at ``path`` (an empty segment never matches)."""
    current: Any = node
    for segment in path:
        if not segment or not isinstance(current, dict) or segment not in current:
            return False
        current = current[segment]
    return True


def _listify(node: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """Turn every dict whose keys are all indices into a list, depth first."""
    for key, value in node.items():
        if isinstance(value, dict):
            node[key] = _listify(value)
    if node and all(whole_number(key) is not None for key in node):
        return [node[key] for key in sorted(node, key=int)]
    return node
