"""Analysis of a run's frames: the tables and figures the notebooks show, computed and tested here.

The notebooks in ``notebooks/`` stay thin (load, call, show) so that every figure nbval checks
comes from a function with a test behind it. Each function takes a run's
:class:`~sim.results.Results` or its DataFrames and returns a DataFrame, a figure's axes or a
plain number; none of them runs a simulation. One module per subject, each imported by the
notebooks that show it:

- :mod:`~sim.analysis.kinds`: the event kinds the analysis reads (shared by the others);
- :mod:`~sim.analysis.topups`: the event log joined into one row per attempt and per threshold
  crossing (shared by timing, cooldowns and books);
- :mod:`~sim.analysis.samples`: how many users a figure rests on, 95% intervals of shares, and
  the error bars and titles that show both (every chart uses them);
- :mod:`~sim.analysis.population` and :mod:`~sim.analysis.balances`: who a run's users are and one
  user's balance over time (``00_quickstart``);
- :mod:`~sim.analysis.timing`: crossing to claim, charge and credits, and refusals in that gap
  (``01_trigger_timing``);
- :mod:`~sim.analysis.cooldowns`: what the cooldown blocks, who runs dry and what its length does
  (``02_cooldown_behaviour``);
- :mod:`~sim.analysis.failures`: gateway outcomes, how attempts ended, declines, retries,
  notifications and card states (``03_failure_rates``);
- :mod:`~sim.analysis.books`: money charged against credits granted, and the billing's rules
  re-checked from the frames (``03_failure_rates``).

- :mod:`~sim.analysis.monitoring`: the billing's Prometheus metrics over a run, read as the
  alerting rules read them (increases, volumes, shares, a histogram's quantile);
- :mod:`~sim.analysis.alerts`: the rules of ``deploy/prometheus/alerts.yml`` replayed over them,
  when each would have fired, and a timeline against the scenario's faults (``05_alerts``).

The threshold review (``04_threshold_review``) lives apart, in :mod:`sim.review`.

The event log grows new kinds as the simulation grows (webhook deliveries, subscription
renewals), and payment-intent ids change format with the gateway behind the run. So every
function here selects the kinds it needs by name, links rows by ``(user, attempt)`` or by equal
``payment_intent`` values only, and never parses an id.

Terms used throughout:

- A *crossing* starts at a request (served or refused) that finds the balance at or below the
  user's threshold when the previous balance seen was above it, or when a top-up was credited
  since. It lasts until credits land or the balance is seen above the threshold again. The
  billing's rule is one crossing, at most one paid charge.
- An *attempt* is one claimed top-up: the request that claimed it, the gateway calls made for it
  (retries of transient errors reuse the attempt) and the notification that ended it.
"""
