"""Writes ``sample_usage.csv``: a synthetic usage trace in the format ``sim.traces`` reads, made
from a fixed seed so that the committed file can be checked and made again.

24 users over 7 days from 2026-01-01T00:00:00Z: each has their own daily rate (8 to 80
requests), busiest in the afternoon, and lognormal costs around their own median (20 to 90
credits). Timestamps are ISO 8601 with a zone, as a production request log would write them.

    python scenarios/traces/make_sample.py
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
DAYS, USERS, SEED = 7, 24, 2026
OUT = Path(__file__).with_name("sample_usage.csv")


def main() -> None:
    rng = np.random.default_rng(SEED)
    rows = []
    for n in range(USERS):
        rate, median = rng.uniform(8, 80), rng.uniform(20, 90)
        count = rng.poisson(rate * DAYS * 1.6)
        times = rng.uniform(0, DAYS * 86_400, count)
        # Thinning to a diurnal cycle peaking at 15:00 (amplitude 0.6).
        keep = rng.random(count) * 1.6 < 1 + 0.6 * np.cos(2 * np.pi * (times / 86_400 - 15 / 24))
        for t in np.sort(np.round(times[keep])):
            cost = max(1, round(float(rng.lognormal(np.log(median), 0.5))))
            stamp = datetime.fromtimestamp(START + t, UTC).isoformat().replace("+00:00", "Z")
            rows.append((f"cust_{n:03d}", stamp, cost))
    pd.DataFrame(rows, columns=["user", "timestamp", "credits"]).to_csv(OUT, index=False)
    print(f"{OUT}: {len(rows):,} requests of {USERS} users over {DAYS} days")


if __name__ == "__main__":
    main()
