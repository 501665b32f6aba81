"""The fault matrix over ``chaos``: what each fault costs the users, next to no fault at all.

Runs ``scenarios/chaos.toml`` (same users, same requests) with every fault off, with each fault
alone, and with all of them, and prints per variant: requests refused and failed, hours dry per
user, top-ups, and how long credits took from the claim (mean and 90th percentile, seconds). Every
run also checks the billing invariants; a breach would stop the script.

    python bench/faults.py [--users 100] [--days 7] [--seed 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from interpreter import print_interpreter

from sim import load_scenario, run
from sim.faults import fault_matrix

CHAOS = Path(__file__).resolve().parents[1] / "scenarios" / "chaos.toml"


def credit_delays(events: pd.DataFrame) -> pd.Series:
    """Seconds from each claimed top-up to its credit (attempts that were credited)."""
    claims = events[events["kind"].isin(["request", "refused"]) & events["attempt"].notna()]
    credits = events[events["kind"] == "topup_succeeded"]
    joined = claims[["user", "attempt", "time"]].merge(
        credits[["user", "attempt", "time"]], on=["user", "attempt"], suffixes=("_claim", "")
    )
    return joined["time"] - joined["time_claim"]


def main() -> None:
    """Run the matrix and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    print_interpreter()
    scenario = load_scenario(CHAOS, users=args.users, days=args.days)
    rows = []
    for name, variant in fault_matrix(scenario).items():
        results = run(variant, seed=args.seed, backend="memory")
        s = results.summary.iloc[0]
        delays = credit_delays(results.events)
        rows.append(
            {
                "faults": name,
                "refused": int(s["refused"]),
                "failed requests": int(s["request_failures"]),
                "dry h/user": round(float(s["dry_hours_per_user"]), 2),
                "top-ups": int(s["topups"]),
                "credit delay mean s": round(float(delays.mean()), 1),
                "credit delay p90 s": round(float(delays.quantile(0.9)), 1),
                "transient errors": int(s["transient_errors"]),
                "webhook failures": int(s["webhook_failures"]),
            }
        )
    print(f"chaos, {args.users} users x {args.days:g} days, seed {args.seed}; invariants held")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
