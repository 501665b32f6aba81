"""The SimPy environment of a run, with one shortcut for the request stream.

A month of traffic is about a million requests, each at its own millisecond. Waiting for the next
one with ``yield env.timeout(...)`` builds an event, pushes it on SimPy's queue, pops it and
resumes the generator: about a tenth of a request's whole cost. Most of the time nothing else is
scheduled before that next request, and then the wait does nothing but move the clock.
:meth:`Environment.skip_to` does exactly that and nothing more, and only when it is exactly what
the timeout would have done: when every scheduled event lies strictly after the target time, the
timeout would be the next event popped, and no other process runs in between, so skipping it
changes no order and no event (``tests/sim/test_environment.py`` holds it to that).
"""

from __future__ import annotations

import simpy


class Environment(simpy.Environment):
    """``simpy.Environment`` plus :meth:`skip_to`."""

    def skip_to(self, time: int) -> bool:
        """Move the clock to ``time`` if no scheduled event comes at or before it; say whether it
        moved. When it did not, wait with a timeout as usual: events already due at ``time`` run
        first, as they would before a timeout scheduled now."""
        queue = self._queue
        if queue and queue[0][0] <= time:
            return False
        self._now = time
        return True
