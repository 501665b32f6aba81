"""Stripe's error envelope, raised inside the state machine and rendered by the emulator.

Every failure a handler reports is a :class:`StripeAPIError` carrying exactly the fields Stripe
puts in ``{"error": {...}}`` plus the HTTP status, so ``stripe-python`` maps it to the same
exception class (``CardError`` for 402, ``InvalidRequestError`` for 400/404, ``IdempotencyError``,
``RateLimitError``...) it would raise against real Stripe.
"""

from __future__ import annotations

from typing import Any

_DOCS = "https://stripe.com/docs/error-codes/"


class StripeAPIError(Exception):
    """A Stripe API error: HTTP ``status`` plus the ``error`` object's fields.

    ``saved`` says whether the idempotency layer stores the outcome: Stripe saves results once an
    endpoint has started executing (a declined charge is replayed), but not validation failures.
    """

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        saved: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.saved = saved
        body: dict[str, Any] = {"type": type, "message": message}
        if code is not None:
            body["code"] = code
            body["doc_url"] = _DOCS + code.replace("_", "-")
        if decline_code is not None:
            body["decline_code"] = decline_code
        if param is not None:
            body["param"] = param
        body.update(extra)
        self.error = body

    def envelope(self) -> dict[str, Any]:
        """The JSON body Stripe answers with."""
        return {"error": self.error}


def raise_if(error: StripeAPIError | None) -> None:
    """Raise ``error``, if any: for a handler that is told of a failure rather than raising it.

    Call it with the call that returns the error, never with a local holding it: a frame that
    raises an exception it still refers to is in that exception's traceback, a reference cycle
    that only the cyclic garbage collector frees, and with that frame everything it holds (the
    emulator's whole state, at the end of a simulation). This frame lets go of it first.
    """
    if error is not None:
        try:
            raise error
        finally:
            del error


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeAPIError:
    """A 400 ``invalid_request_error`` (bad or missing parameter, wrong state)."""
    return StripeAPIError(status, "invalid_request_error", message, code=code, param=param)


def no_such(kind: str, object_id: str, *, param: str | None = None) -> StripeAPIError:
    """``resource_missing``: 404 for an id in the path, 400 for an id given as a parameter."""
    return StripeAPIError(
        404 if param is None else 400,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def unknown_parameter(name: str) -> StripeAPIError:
    """Stripe's answer to a parameter the endpoint does not accept."""
    return invalid_request(
        f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
    )


def missing_parameter(name: str) -> StripeAPIError:
    """Stripe's answer to a required parameter left out."""
    return invalid_request(f"Missing required param: {name}.", param=name, code="parameter_missing")


def not_modelled(name: str) -> StripeAPIError:
    """A documented parameter whose effect the emulator does not reproduce: refused, never
    ignored."""
    return invalid_request(
        f"The Stripe emulator does not model the parameter '{name}' on this endpoint.",
        param=name,
        code="parameter_not_modelled",
    )
