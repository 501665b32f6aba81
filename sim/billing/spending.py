"""Spending credits over HTTP (``POST /v1/usage``): the guard of a service-to-service call.

Who spends: the product's own backend, once per billable request of a user, not the user's
browser. So the endpoint is authenticated by a **service token** (``X-Service-Token``), a secret
shared with that backend and separate from user sessions: a user's bearer token cannot spend, and
a leaked user session cannot drain anyone's balance. The token is compared in constant time.

What a deployment would want, and what is done here:

- **A cap per request** (:data:`MAX_CREDITS_PER_REQUEST`): one call cannot take a whole balance by
  a typo or a bug upstream. Larger costs are split by the caller.
- **Idempotency** (``Idempotency-Key``, required): a caller that lost the answer sends the same
  request again with the same key and gets the first answer back, never a second deduction. The
  key is kept by the store in the deduction's own transaction
  (:meth:`~sim.billing.store.Store.deduct` with ``request_key``, for
  :data:`~sim.billing.store.USAGE_KEY_SECONDS`), so a retry is safe whichever API process it
  reaches, after a restart too, and two copies sent at once take credits once (the second waits
  for the first's transaction and replays it). The same key with other credits is refused
  (``IdempotencyKeyReused``). A refused deduction (not enough credits) is not kept: the retry is
  evaluated again, since a top-up may have arrived.

Rate limiting per caller is left to the gateway in front of the API.
"""

from __future__ import annotations

from typing import Final

#: The most credits one request may spend (the largest tier is 54,000 credits).
MAX_CREDITS_PER_REQUEST: Final = 10_000
