"""Benchmark: machine instructions per deduction and per simulated request, counted by valgrind.

Wall time on a shared machine moves by 10-50% from one run to the next; the number of
instructions a piece of Python executes does not (it moves by well under 0.1%). So a change
that removes work on the hot path is best judged by this count, next to the same count for the
code before it: give ``--vs`` a second source tree (for instance a ``git worktree`` of the
previous commit) and both are counted and their ratio printed. Instructions are not time (a
cache miss costs more than an add), so the speed targets stay measured in seconds by the other
scripts; this one says whether a change did less work.

Each case runs twice under ``valgrind --tool=cachegrind``: once with no work and once with the
work, so imports and set-up cancel out. Cases:

- ``deduction``: ``BillingService.deduct_credits`` on ``MemoryCache`` + ``MemoryStore``, 200
  users with auto top-up on and balances above the threshold, in random order (the sweeps' path
  for nearly every request);
- ``week``: the ``baseline`` scenario, 200 users x 7 days on the sweeps' path (``memory``,
  ``direct``), divided by its requests: everything a request costs, top-ups, webhooks and the
  frames included.

Needs ``valgrind`` (Debian's package); a run takes a few minutes (valgrind runs Python about 50
times slower).

    python bench/instructions.py [--vs OTHER_TREE] [--deductions 20000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

#: The work of each case, run as ``python -c`` with the work's size as ``sys.argv[1]`` (0: none).
#: Printing the requests lets the week's count be divided per request.
CASES = {
    "deduction": """
import random, sys
from sim.billing import (AutoTopupSettings, BillingService, ManualClock, MemoryCache,
    MemoryStore, QueueRunner, RecordingNotifier, Vault)
from sim.billing.testing import ScriptedGateway
n = int(sys.argv[1])
billing = BillingService(clock=ManualClock(), cache=MemoryCache(), store=MemoryStore(),
    gateway=ScriptedGateway(), notifier=RecordingNotifier(), tasks=QueueRunner(),
    vault=Vault(b"b" * 32))
ids = [f"user-{i:04d}" for i in range(200)]
for user in ids:
    billing.create_user(user, balance=10**9)
    billing.store.save_settings(user, AutoTopupSettings(True, 1000, 10000, "eur"))
rng = random.Random(1)
order = [ids[rng.randrange(200)] for _ in range(n)]
deduct = billing.deduct_credits
for user in order:
    deduct(user, 3)
print(n)
""",
    "week": """
import sys
from pathlib import Path
import sim
from sim import load_scenario, run
import sim.results, sim.runner
scenario = load_scenario(Path(sim.__file__).resolve().parents[1] / "scenarios" / "baseline.toml",
                         users=200, days=7)
if int(sys.argv[1]):
    results = run(scenario, backend="memory", gateway="direct")
    print(int(results.summary.loc[0, "requests"]))
else:
    print(0)
""",
}


def instructions(tree: Path, case: str, size: int) -> tuple[int, int]:
    """(instructions executed, the work's size as the case printed it) for one run, with
    ``tree`` first on the path (and as the working directory, which ``python -c`` puts first)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-c", CASES[case], str(size)],
        env=env, cwd=tree, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count for {case} in {tree}")
    return int(found.group(1).replace(",", "")), int(done.stdout.split()[-1])


def per_op(tree: Path, case: str, size: int) -> float:
    """Instructions per deduction or per request: the work's run minus the empty one."""
    idle, _ = instructions(tree, case, 0)
    busy, ops = instructions(tree, case, size)
    return (busy - idle) / ops


def main() -> None:
    """Count, print, and compare with ``--vs`` when given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vs", type=Path, help="another source tree, counted the same way")
    parser.add_argument("--deductions", type=int, default=20_000, help="calls counted")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = [HERE, *([args.vs.resolve()] if args.vs else [])]
    sizes = {"deduction": args.deductions, "week": 1}
    units = {"deduction": "a deduct_credits call", "week": "a request, baseline week (all in)"}
    compared = " and --vs" if args.vs else ""
    print(f"machine instructions (valgrind cachegrind), this tree{compared}")
    for case, size in sizes.items():
        counts = [per_op(tree, case, size) for tree in trees]
        line = f"  {units[case]:<36} {counts[0]:>10,.0f}"
        if len(counts) == 2:
            line += f"   --vs {counts[1]:>10,.0f}   this / vs = {counts[0] / counts[1]:.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
