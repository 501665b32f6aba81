"""The simulation package's public surface is exactly its __all__, imported on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sim


def test_all_names_the_exports_and_each_resolves() -> None:
    """__all__ lists exactly the exported names, sorted, and each one is importable."""
    assert sim.__all__ == sorted(sim._EXPORTS)
    for name in sim.__all__:
        assert getattr(sim, name) is not None
    assert set(sim.__all__) <= set(dir(sim))
    # Submodules are named apart from the functions (runner.run, sweeps.sweep), so importing one
    # can never shadow an exported function.
    assert callable(sim.run) and callable(sim.sweep)


def test_the_documented_entry_points_are_exported() -> None:
    """run, sweep, load_scenario, Scenario and Results are importable from sim."""
    assert {"run", "sweep", "load_scenario", "Scenario", "Results"} <= set(sim.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    """A name that is not exported is an AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="nothing_here"):
        _ = sim.nothing_here  # type: ignore[attr-defined]


def test_importing_sim_loads_no_simulation_dependency() -> None:
    """`import sim` (as `import sim.billing` does) loads neither SimPy nor pandas nor joblib."""
    code = (
        "import sys, sim;"
        "bad = [m for m in ('simpy', 'pandas', 'joblib', 'sim.world') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
