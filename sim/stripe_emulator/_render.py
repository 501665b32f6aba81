"""Turning stored objects into answers: ``expand[]`` and JSON.

Stored objects reference others by id; ``expand[]=customer`` (or ``data.customer`` on a list, or a
dotted path such as ``latest_charge.payment_method``) replaces the id with the object, on copies,
so the store is never touched.
"""

from __future__ import annotations

import json
from typing import Any

from ._errors import invalid_request
from ._store import Store, StripeObject

#: Stripe expands at most four levels deep (``a.b.c.d``).
MAX_EXPAND_DEPTH = 4


def expand(store: Store, obj: StripeObject, paths: list[Any]) -> StripeObject:
    """``obj`` with every dotted path in ``paths`` expanded."""
    for path in paths:
        if not isinstance(path, str) or not path:
            raise invalid_request("Invalid expand path.", param="expand")
        parts = path.split(".")
        if len(parts) > MAX_EXPAND_DEPTH:
            raise invalid_request(
                f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property.",
                param="expand",
            )
        obj = _expand(store, obj, parts, path)
    return obj


def _expand(store: Store, obj: StripeObject, parts: list[str], path: str) -> StripeObject:
    head, rest = parts[0], parts[1:]
    value = obj.get(head, _MISSING)
    if value is _MISSING or head in ("id", "object"):
        raise _cannot(path)
    if value is None:
        return obj
    copy = dict(obj)
    if isinstance(value, list):
        if not rest:
            raise _cannot(path)
        copy[head] = [_expand(store, item, rest, path) for item in value]
        return copy
    if isinstance(value, str):
        target = store.objects.get(value)
        if target is None:
            raise _cannot(path)
        value = target
    elif not isinstance(value, dict):
        raise _cannot(path)
    copy[head] = _expand(store, value, rest, path) if rest else value
    return copy


def _cannot(path: str) -> Exception:
    return invalid_request(f"This property cannot be expanded ({path}).", param="expand")


_MISSING = object()


#: Types whose values a JSON parser hands back as they are (equal, and immutable).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def json_values(value: Any) -> Any:
    """What a JSON parser reads back from the text of ``value``: a private copy (objects and
    arrays new at every level, tuples as lists), built without writing and parsing the text.

    For a client in this process that would only parse the answer again: copying the emulator's
    dicts is several times cheaper than the C encoder and decoder together, and the copy is
    still the client's own (nothing it does reaches the store). An answer's keys are strings
    (the emulator's own literals, and form keys, which are text); a value of any other type
    (an ``IntEnum``, a ``str`` subclass) goes through the text itself.

    An object is copied whole in C and only its nested values are replaced, in place: most of
    its values are plain, and a comprehension would build every entry again in Python.
    """
    kind = type(value)
    if kind is dict:
        copy = value.copy()
        for key, item in copy.items():
            if type(item) not in _PLAIN:
                copy[key] = json_values(item)  # same keys: iterating stays valid
        return copy
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else json_values(v) for v in value]
    if kind in _PLAIN:
        return value
    return json.loads(json.dumps(value))
