"""95% intervals for a run's headline figures, across its users.

A run is a sample of users; a figure such as "users who ran dry, per 1,000 users" is an estimate
whose uncertainty depends on how many users it rests on. Each headline figure of the summary
carries a 95% interval in ``<figure>_ci_low`` and ``<figure>_ci_high``:

- a share of users (``dry_per_1000_users``): the Wilson score interval, which stays inside
  [0, 1] and keeps its coverage for small samples and shares near 0 (where the textbook
  ``p +- 1.96 sqrt(p(1-p)/n)`` collapses to a zero-width interval at p = 0);
- a mean per user (``dry_hours_per_user``, ``topups_per_user_month``): the mean plus or minus
  1.96 standard errors (the sample standard deviation over the square root of the number of
  users), by the central limit theorem over independent users.

Users are independent in the model (each has their own random stream and nothing couples them
but the shared Stripe and store, which do not change their usage), so the intervals are across
users. A figure from fewer than two users has no interval (NaN).
"""

from __future__ import annotations

import math

import numpy as np

#: The normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054

#: The summary figures that carry an interval (a share of users first, then two means per user).
INTERVALS = ("dry_per_1000_users", "dry_hours_per_user", "topups_per_user_month")


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a share ``successes / n`` (NaN for ``n`` < 2)."""
    if n < 2:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / denominator
    # At 0 (or n) successes the bound is exactly 0 (or 1); the float sum leaves 1e-15 or so.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% interval of the mean of ``values`` (one per user): mean +- 1.96 standard errors
    (NaN for fewer than two values). Values that are all 0 or more (hours, top-ups) are a
    quantity that cannot be negative, so the lower bound stops at 0: a few users far from the
    rest (hours dry among light users, nearly all 0) would otherwise give "0.02 (-0.01 to 0.05)"."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = float(np.mean(values))
    half = Z95 * float(np.std(values, ddof=1)) / math.sqrt(n)
    low = mean - half
    if low < 0 and float(np.min(values)) >= 0:
        low = 0.0
    return low, mean + half
