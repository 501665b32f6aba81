"""``bench/interpreter.py``: the first line of every timing benchmark names the build it ran on."""

from __future__ import annotations

import importlib
import io
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def interpreter(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("interpreter")


def _maps(text: str) -> Callable[..., io.StringIO]:
    """A stand-in for ``open`` that reads ``text`` as the process map."""
    return lambda *_args, **_kwargs: io.StringIO(text)


def test_the_line_names_version_and_executable_of_this_process(interpreter: ModuleType) -> None:
    line = interpreter.describe()
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    assert line.startswith(f"{platform.python_implementation()} {platform.python_version()} at ")
    assert f" at {executable} (libpython " in line


@pytest.mark.parametrize(
    ("maps", "linked"),
    [
        ("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libpython3.11.so.1.0\n", "shared"),
        ("5600-5601 r-xp 0 08:01 1 /usr/bin/python3.11\n", "static"),
    ],
)
def test_how_libpython_is_linked_is_read_from_the_process_map(
    interpreter: ModuleType, monkeypatch: pytest.MonkeyPatch, maps: str, linked: str
) -> None:
    monkeypatch.setattr(interpreter, "open", _maps(maps), raising=False)
    assert f"(libpython {linked}" in interpreter.describe()


def test_without_a_process_map_the_build_configuration_says(
    interpreter: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_maps(*_args: object, **_kwargs: object) -> None:
        raise OSError("no /proc here")

    monkeypatch.setattr(interpreter, "open", no_maps, raising=False)
    configured = {"Py_ENABLE_SHARED": 1, "CONFIG_ARGS": "'--enable-optimizations'"}
    monkeypatch.setattr(interpreter.sysconfig, "get_config_var", configured.get)
    assert interpreter.describe().endswith("(libpython shared, --enable-optimizations)")
