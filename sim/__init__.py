"""topup-sim: a prepaid-credits billing module (``sim.billing``) and the harness around it.

The simulation's public surface: load a scenario, run it (or sweep it over a grid) and get tidy
DataFrames back, with the billing's invariants checked at the end of every run::

    import sim

    results = sim.run(sim.load_scenario("scenarios/baseline.toml"), seed=1)
    results.summary, results.users, results.events

The names are imported on first use (PEP 562): a server that imports ``sim.billing`` runs this
file too, and must not pay for, or depend on, SimPy, pandas or joblib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends import BACKENDS, Backend, OpenBackend, get_backend
    from .invariants import InvariantViolation, Violation, check_invariants
    from .results import Results
    from .runner import run
    from .scenario import Scenario, ScenarioError, load_scenario, parse_scenario
    from .sweeps import grid_points, sweep

#: Public name -> the module that holds it.
_EXPORTS = {
    "BACKENDS": "backends",
    "Backend": "backends",
    "InvariantViolation": "invariants",
    "OpenBackend": "backends",
    "Results": "results",
    "Scenario": "scenario",
    "ScenarioError": "scenario",
    "Violation": "invariants",
    "check_invariants": "invariants",
    "get_backend": "backends",
    "grid_points": "sweeps",
    "load_scenario": "scenario",
    "parse_scenario": "scenario",
    "run": "runner",
    "sweep": "sweeps",
}

__all__ = [
    "BACKENDS",
    "Backend",
    "InvariantViolation",
    "OpenBackend",
    "Results",
    "Scenario",
    "ScenarioError",
    "Violation",
    "check_invariants",
    "get_backend",
    "grid_points",
    "load_scenario",
    "parse_scenario",
    "run",
    "sweep",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
