"""Offline Stripe test mode: a stateful emulator driven through the real ``stripe`` library.

Two ways in to one state machine:

* in-process, for the simulation -- no socket, latency reported instead of slept::

      emulator = StripeEmulator(clock=my_clock, seed=7)
      client = emulator.stripe_client()            # a stripe.StripeClient
      client.v1.payment_intents.create(params={...})

* over HTTP on 127.0.0.1, for any Stripe client: ``python -m sim.stripe_emulator --port 12111``,
  then
  ``stripe.StripeClient("sk_test_x", base_addresses={"api": "http://127.0.0.1:12111"})``.

A client without the library calls :meth:`StripeEmulator.handle` with the form body
:func:`form_encode` writes, as stripe-python would, or in process with ``form=``
:func:`form_values` (the same parameters, already read), and :meth:`StripeEmulator.handle_parsed`
answers such a client with the JSON values instead of their text (the simulation's sweeps do).

Each API key is its own account (objects, lists, events and webhook endpoints of one key are
invisible to another). Webhook deliveries are queued on the emulator clock; the owner of time pulls
them with :meth:`StripeEmulator.due_deliveries` and reports outcomes with
:meth:`StripeEmulator.report_delivery`. The package stands alone: its :class:`Clock` is its own
protocol (``now() -> float``), which any clock with that method fits. See
``docs/stripe_emulator.md`` for what is modelled and what is not.
"""

from ._cards import ALIASES as TEST_CARD_ALIASES
from ._cards import DECLINES
from ._clock import Clock, ManualClock, SystemClock
from ._emulator import EmulatorResponse, ParsedResponse, Snapshot, StripeEmulator
from ._faults import Fault, Faults
from ._form import encode as form_encode
from ._form import form_values
from ._server import EmulatorServer, serve
from ._transport import EmulatorHTTPClient, LatencyCallback
from ._webhooks import Delivery, signature_header

#: The decline codes a per-charge law (``StripeEmulator.set_decline_law``) may draw, sorted.
DECLINE_CODES: tuple[str, ...] = tuple(sorted(DECLINES))

__all__ = [
    "DECLINE_CODES",
    "TEST_CARD_ALIASES",
    "Clock",
    "Delivery",
    "EmulatorHTTPClient",
    "EmulatorResponse",
    "EmulatorServer",
    "Fault",
    "Faults",
    "LatencyCallback",
    "ManualClock",
    "ParsedResponse",
    "Snapshot",
    "StripeEmulator",
    "SystemClock",
    "form_encode",
    "form_values",
    "serve",
    "signature_header",
]
