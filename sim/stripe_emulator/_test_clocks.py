"""Test clocks: frozen time for the customers attached to them, advanced on demand to bill renewals.

Stripe advances a clock asynchronously (``advancing`` then ``ready``); the emulator runs every
renewal and payment retry due up to the new time inside the advance call and answers with
``status=ready``, and still emits ``test_helpers.test_clock.advancing`` and ``.ready`` for clients
that wait for them.
"""

from __future__ import annotations

from ._errors import invalid_request
from ._params import Params
from ._routing import Route
from ._state import State
from ._store import StripeObject
from ._subscriptions import run_timers

#: Stripe deletes a test clock 30 days after its creation.
LIFETIME = 30 * 86_400

#: Latest ``frozen_time`` accepted (2100-01-01): calendar arithmetic on renewals must stay within
#: the years Python's datetime can represent, and no test needs a later time.
LATEST = 4_102_444_800


def create(st: State, p: Params) -> StripeObject:
    """``POST /v1/test_helpers/test_clocks`` with ``frozen_time``."""
    frozen = p.integer("frozen_time", required=True, minimum=0, maximum=LATEST)
    clock: StripeObject = {
        "id": st.ids.new("clock"),
        "object": "test_helpers.test_clock",
        "created": st.now(),
        "deletes_after": st.now() + LIFETIME,
        "frozen_time": frozen,
        "livemode": False,
        "name": p.text("name"),
        "status": "ready",
        "status_details": {},
    }
    st.store.put(clock, ("test_clock",))
    st.emit("test_helpers.test_clock.created", clock)
    return clock


def retrieve(st: State, p: Params, clock_id: str) -> StripeObject:
    """``GET /v1/test_helpers/test_clocks/{id}``."""
    return st.store.get(clock_id, "test_helpers.test_clock")


def advance(st: State, p: Params, clock_id: str) -> StripeObject:
    """``POST /v1/test_helpers/test_clocks/{id}/advance``: bill everything due up to
    ``frozen_time``."""
    clock = st.store.get(clock_id, "test_helpers.test_clock")
    target = p.integer("frozen_time", required=True, maximum=LATEST)
    if target <= clock["frozen_time"]:  # type: ignore[operator]
        raise invalid_request(
            "The test clock can only be advanced to a time after its current frozen_time.",
            param="frozen_time",
        )
    clock["status"] = "advancing"
    st.emit("test_helpers.test_clock.advancing", clock)
    request = st.request
    run_timers(st, clock_id, target)  # type: ignore[arg-type]
    st.request = request
    clock["frozen_time"] = target
    clock["status"] = "ready"
    st.emit("test_helpers.test_clock.ready", clock)
    return clock


def delete(st: State, p: Params, clock_id: str) -> StripeObject:
    """``DELETE /v1/test_helpers/test_clocks/{id}``."""
    st.store.get(clock_id, "test_helpers.test_clock")
    st.store.remove_from(("test_clock",), clock_id)
    st.timers.pop(clock_id, None)
    tombstone = {"id": clock_id, "object": "test_helpers.test_clock", "deleted": True}
    st.store.objects[clock_id] = tombstone
    return tombstone


def list_(st: State, p: Params) -> StripeObject:
    """``GET /v1/test_helpers/test_clocks``."""
    return st.page(p, ("test_clock",), "/v1/test_helpers/test_clocks")


ROUTES = (
    Route("post", "/v1/test_helpers/test_clocks", create, "test_helpers.TestClockCreateParams"),
    Route("get", "/v1/test_helpers/test_clocks", list_, "test_helpers.TestClockListParams"),
    Route(
        "get",
        "/v1/test_helpers/test_clocks/{id}",
        retrieve,
        "test_helpers.TestClockRetrieveParams",
    ),
    Route(
        "delete", "/v1/test_helpers/test_clocks/{id}", delete, "test_helpers.TestClockDeleteParams"
    ),
    Route(
        "post",
        "/v1/test_helpers/test_clocks/{id}/advance",
        advance,
        "test_helpers.TestClockAdvanceParams",
    ),
)
