"""The package's public surface and the billing module's isolation from the simulation."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

import sim.billing

BILLING = Path(sim.billing.__file__).parent
FORBIDDEN = ("simpy", "pandas", "joblib", "dask", "matplotlib", "fakeredis")


def test_billing_public_api_is_exactly_all() -> None:
    """Every name in __all__ exists, and every public re-export is listed in __all__."""
    exported = {n for n in dir(sim.billing) if not n.startswith("_")}
    modules = {p.stem for p in BILLING.glob("*.py")}
    assert set(sim.billing.__all__) <= exported
    assert exported - set(sim.billing.__all__) <= modules
    assert sorted(sim.billing.__all__) == sorted(set(sim.billing.__all__))


def test_billing_imports_nothing_from_the_simulation() -> None:
    """No module in sim/billing imports simpy, pandas or the rest of sim (a server imports it)."""
    offenders = []
    for path in sorted(BILLING.glob("*.py")):
        if path.name == "testing.py":
            continue  # test doubles; checked below to stay free of simulation code too
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                outside = name.startswith("sim.") and not name.startswith("sim.billing")
                if name.split(".")[0] in FORBIDDEN or outside:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_importing_billing_loads_no_simulation_package() -> None:
    """A fresh interpreter importing sim.billing (its test doubles, server and commands) loads
    none of them, nor psycopg: a SQLite deployment needs no ``postgres`` extra."""
    code = (
        "import sys, sim.billing, sim.billing.testing, sim.billing.serve, sim.billing.reconcile,"
        " sim.billing.migrate;"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {(*FORBIDDEN, 'psycopg')!r}"
        " or (m.startswith('sim.') and not m.startswith('sim.billing'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stripe_emulator_stands_alone() -> None:
    """No module of sim/stripe_emulator imports sim.billing or any other sim package (it has its
    own clock), and a fresh interpreter importing it loads none of them."""
    emulator = BILLING.parent / "stripe_emulator"
    offenders = []
    for path in sorted(emulator.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 1:
                    names = ["." * node.level + (node.module or "")]
                elif node.level == 0 and node.module:
                    names = [node.module]
            for name in names:
                inside = name.startswith("sim.stripe_emulator")
                if name.startswith(".") or (name.split(".")[0] == "sim" and not inside):
                    offenders.append(f"{path.name}: {name}")
    assert len(list(emulator.glob("*.py"))) > 10
    assert offenders == []
    code = (
        "import sys, sim.stripe_emulator;"
        "bad = [m for m in sys.modules if m.startswith('sim.')"
        " and not m.startswith('sim.stripe_emulator')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _requirement_names(requirements: list[str]) -> set[str]:
    """Distribution names of the requirements that apply here (no extras, markers evaluated)."""
    names = set()
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.add(requirement.name.lower().replace("_", "-"))
    return names


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` install, with everything they require in turn."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += _requirement_names(importlib.metadata.requires(name) or [])
    return seen


def test_core_install_is_what_billing_imports() -> None:
    """``pip install topup-sim`` (no extras) installs every third-party package that the billing
    module imports (its API and server included), and none of the simulation's or notebooks';
    the one exception is the PostgreSQL store's psycopg, installed by the ``postgres`` extra and
    loaded only when a store URL names PostgreSQL (the next test)."""
    project = tomllib.loads((BILLING.parents[1] / "pyproject.toml").read_text())["project"]
    core = _requirement_names(project["dependencies"])
    postgres = _closure(_requirement_names(project["optional-dependencies"]["postgres"]))
    installed = _closure(core)
    providers = importlib.metadata.packages_distributions()
    needed = set()
    for path in sorted(BILLING.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                needed |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                needed.add(node.module.split(".")[0])
    third_party = {m for m in needed if m not in sys.stdlib_module_names and m != "sim"}
    missing = {
        module
        for module in third_party
        if not {d.lower().replace("_", "-") for d in providers.get(module, [])} & installed
    }
    assert third_party and missing == {"psycopg", "psycopg_pool"}
    assert all({d.lower() for d in providers[module]} & postgres for module in missing)
    assert not {name.split("[")[0] for name in FORBIDDEN} & installed
    assert {"jupyterlab", "nbval", "pytest", "matplotlib", "dask"}.isdisjoint(installed)
