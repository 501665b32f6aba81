"""Stripe's bracket form encoding: ``a[b][0][c]=x`` <-> nested dicts and lists.

Stripe's v1 API takes ``application/x-www-form-urlencoded`` bodies (and query strings) whose keys
nest with brackets; ``stripe-python`` writes lists as ``key[0]``, other clients as ``key[]``. Both
decode to Python lists here. Values stay strings: each endpoint coerces what it reads (see
``_params``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from ._errors import invalid_request


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
            key = unquote_plus(key)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        if not key:
            continue
        if "[" not in key:
            root[key] = value
            continue
        nested = True
        _put(root, key, value)
    if nested:
        for key, value in root.items():
            if isinstance(value, dict):
                root[key] = _listify(value)
    return root


def _put(root: dict[str, Any], key: str, value: str) -> None:
    head, _, rest = key.partition("[")
    if not rest.endswith("]"):
        raise invalid_request(f"Invalid parameter name: {key}", param=key)
    segments = [head, *rest[:-1].split("][")]
    node = root
    for segment in segments[:-1]:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise invalid_request(f"Invalid nesting for parameter: {key}", param=key)
        node = child
    last = segments[-1]
    if last == "":
        last = str(len(node))
    node[last] = value


def _listify(node: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """Turn every dict whose keys are all indices into a list, depth first."""
    for key, value in node.items():
        if isinstance(value, dict):
            node[key] = _listify(value)
    if node and all(key.isdigit() for key in node):
        return [node[key] for key in sorted(node, key=int)]
    return node
