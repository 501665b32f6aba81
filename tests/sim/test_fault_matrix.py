"""The fault matrix over ``chaos``: each fault alone and all at once, several seeds, no breach."""

from __future__ import annotations

import pytest

from sim import run
from sim.faults import FAULT_KEYS, fault_matrix

from .conftest import shipped

#: What each fault must leave in the summary, proving it was really injected.
EVIDENCE = {
    "stripe errors": "transient_errors",
    "lost answers": "transient_errors",
    "store failures": "store_faults",
    "cache flushes": "cache_flushes",
    "webhook copies, reordering": "webhook_duplicates",
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_fault_keeps_every_invariant(seed: int) -> None:
    """Each fault alone and all together: the run checks its invariants and raises on a breach."""
    variants = fault_matrix(shipped("chaos", users=24, days=2))
    assert list(variants) == ["none", *FAULT_KEYS, "all"]
    summaries = {name: run(s, seed=seed, backend="memory").summary.iloc[0]
                 for name, s in variants.items()}  # fmt: skip
    for name, column in EVIDENCE.items():
        assert summaries["none"][column] == 0
        assert summaries[name][column] > 0, (name, column)

    def traffic(name: str) -> int:
        row = summaries[name]
        return int(row["requests"] + row["refused"] + row["request_failures"])

    assert traffic("none") == traffic("all")  # the same requests, whatever the faults
