"""Reading request parameters the way Stripe validates them.

Which parameters an endpoint accepts comes from the ``stripe`` library's own generated ``*Params``
TypedDicts (``stripe.params.PaymentIntentCreateParams``...), themselves built from Stripe's OpenAPI
spec: the emulator therefore knows the documented parameter names of the API version the installed
library speaks, and answers anything else with Stripe's ``parameter_unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import stripe.params
from stripe._request_options import RequestOptions

from ._errors import invalid_request, missing_parameter, not_modelled, unknown_parameter

_OPTIONS_KEYS = RequestOptions.__optional_keys__ | RequestOptions.__required_keys__


@cache
def known_parameters(class_name: str) -> frozenset[str]:
    """Top-level parameter names of ``stripe.params.<class_name>`` (``expand`` always included)."""
    module = stripe.params
    for part in class_name.split("."):
        module = getattr(module, part)
    names = module.__optional_keys__ | module.__required_keys__
    return frozenset(names - _OPTIONS_KEYS) | {"expand"}


def whole_number(value: object) -> int | None:
    """``value`` as a non-negative integer if it is one written in at most 18 ASCII digits, else
    ``None``: ``str.isdigit`` alone accepts digits ``int`` rejects (``"²"``) and lengths past
    Python's integer-parsing limit, which would escape as a crash instead of a 400."""
    if isinstance(value, str) and 0 < len(value) <= 18 and value.isascii() and value.isdigit():
        return int(value)
    return None


class Params:
    """A request's decoded parameters with Stripe-style typed getters.

    Getters raise the same ``invalid_request_error`` Stripe does (``parameter_missing``,
    ``parameter_invalid_integer``...) and name the offending parameter.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def check_known(self, allowed: frozenset[str]) -> None:
        """Refuse any top-level parameter outside ``allowed``, like Stripe."""
        for name in self.raw:
            if name not in allowed:
                raise unknown_parameter(name)

    def refuse_unmodelled(self, *names: str) -> None:
        """Refuse any of ``names`` that was given: documented parameters whose effect the emulator
        does not reproduce are an error here, never silently ignored."""
        for name in names:
            if name in self.raw:
                raise not_modelled(name)

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def get(self, name: str, default: Any = None) -> Any:
        """The raw value (string, dict or list), or ``default``."""
        return self.raw.get(name, default)

    def text(self, name: str, *, required: bool = False, choices: Iterable[str] = ()) -> str | None:
        """A string parameter; ``""`` (Stripe's way of unsetting) reads as ``None``."""
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise missing_parameter(name)
            return None
        if not isinstance(value, str):
            raise invalid_request(f"Invalid string: {name}", param=name)
        if choices and value not in choices:
            allowed = ", ".join(choices)
            raise invalid_request(
                f"Invalid {name}: must be one of {allowed}",
                param=name,
                code="parameter_invalid_string",
            )
        return value

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """A non-fractional integer parameter, within ``minimum``..``maximum`` when given."""
        value = self.text(name, required=required)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise invalid_request(
                f"Invalid integer: {value}", param=name, code="parameter_invalid_integer"
            ) from None
        if minimum is not None and number < minimum:
            raise invalid_request(
                f"This value must be greater than or equal to {minimum}.",
                param=name,
                code="parameter_invalid_integer",
            )
        if maximum is not None and number > maximum:
            raise invalid_request(
                f"This value must be less than or equal to {maximum}.",
                param=name,
                code="parameter_invalid_integer",
            )
        return number

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean parameter (``true``/``false``)."""
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if value in ("true", "false"):
            return value == "true"
        raise invalid_request(f"Invalid boolean: {value}", param=name)

    def hash(self, name: str) -> dict[str, Any] | None:
        """A hash parameter; ``""`` reads as an empty hash (unset)."""
        value = self.raw.get(name)
        if value is None:
            return None
        if value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid_request(f"Invalid hash: {name}", param=name)
        return value

    def array(self, name: str) -> list[Any]:
        """An array parameter (``a[0]=`` or ``a[]=`` form); absent reads as empty."""
        value = self.raw.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise invalid_request(f"Invalid array: {name}", param=name)
        return value

    def metadata(self, current: dict[str, str] | None = None) -> dict[str, str]:
        """``metadata`` merged over ``current`` as Stripe merges it: ``""`` deletes a key."""
        merged = dict(current or {})
        given = self.hash("metadata")
        if given is None:
            return merged
        if not given:
            return {}
        for key, value in given.items():
            if not isinstance(value, str):
                raise invalid_request(f"Invalid metadata value for {key}", param=f"metadata[{key}]")
            if value == "":
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged
