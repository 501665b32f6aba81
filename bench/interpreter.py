"""The interpreter a benchmark ran on, in one line printed above its figures.

The same code runs faster on an optimised CPython build (profile-guided and link-time
optimised, libpython linked into the executable, as Debian builds it) than on a default source
build (pyenv's: a shared libpython, without ``--enable-optimizations``), so a figure is only
comparable with figures of the same build (docs/performance.md, "The interpreter", measures
the difference).

    python bench/interpreter.py
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig


def describe() -> str:
    """``CPython 3.11.2 at /usr/bin/python3.11 (libpython static)``: implementation, version,
    the executable the virtual environment points at, and how libpython is linked."""
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    linked = "shared" if _libpython_loaded() else "static"
    optimised = "--enable-optimizations" in (sysconfig.get_config_var("CONFIG_ARGS") or "")
    flags = f"libpython {linked}" + (", --enable-optimizations" if optimised else "")
    return (
        f"{platform.python_implementation()} {platform.python_version()} at {executable} ({flags})"
    )


def _libpython_loaded() -> bool:
    """Whether this process runs libpython from a shared library (Linux's map of the process;
    elsewhere, whether the build made one, which Debian's does beside its static executable)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libpython" in line for line in maps)
    except OSError:
        return bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))


def print_interpreter() -> None:
    """Print :func:`describe` as a benchmark's first line."""
    print(f"interpreter: {describe()}")


if __name__ == "__main__":
    print_interpreter()
