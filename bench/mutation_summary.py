"""Per-file table of the last mutation run (``make mutation``; docs/mutation.md).

``mutmut run`` prints one total for everything and ``mutmut results`` one line per mutant, but the
project reads mutation results per billing module. mutmut 3 keeps its verdicts in
``mutants/<source path>.meta`` (JSON, ``exit_code_by_key``), so this script reads those files and
prints killed / survived / total for each module.

The project counts a surviving mutant as an untested behaviour, except one that only changes the
text of an error or log message: such a mutant is listed in its own ``msg-only`` column and left out
of the percentage. It is recognised by comparing the mutated function with mutmut's copy of the
original (both are in ``mutants/<source path>``) once every message string is blanked out; see
``_MessageMask`` for what counts as a message.

In the modules that talk to SQLite (``sqlite_*.py``), a survivor that only changes the case of a
string literal is listed in a ``case-only`` column and left out too: SQLite matches keywords, table,
column and PRAGMA names without regard to case, and so does a ``sqlite3.Row`` looked up by column
name, so no test can tell such a mutant from the original. Elsewhere a case change is behaviour
(a dict key, a header value) and stays a survivor.

    python bench/mutation_summary.py                            # every mutated file
    python bench/mutation_summary.py sim/billing/pricing.py     # only these files
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

# mutmut's own exit-code-to-verdict table, so that this table and `mutmut results` agree.
from mutmut.stats import status_by_exit_code

MUTANTS = Path("mutants")
DEFAULT_SOURCES = Path("sim/billing")
LOG_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
)
# Verdicts that mean the tests noticed the mutant (a timeout is a mutant that made them hang).
DETECTED = frozenset({"killed", "timeout", "caught by type check"})
COLUMNS = (
    "file",
    "killed",
    "survived",
    "msg-only",
    "case-only",
    "no tests",
    "other",
    "total",
    "killed %",
)
# Modules whose string literals are SQL text or sqlite3.Row column names, both matched without
# regard to case (see the module docstring).
CASE_BLIND_PREFIX = "sqlite_"


class _MessageMask(ast.NodeTransformer):
    """Blanks out the strings that are only message text, so that two functions that differ in
    nothing else compare equal.

    A message is a string literal with a space in it, or the text of an f-string, passed
    positionally to an exception built in a ``raise``, to ``super().__init__`` (the errors module
    builds its messages there), or to a logger method. A string without a space
    (``"unauthenticated"``) is an error code that callers can match on, so changing it stays a real
    mutant; so does any change to a keyword argument or to an expression inside an f-string.
    """

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        if isinstance(node.exc, ast.Call):
            self._mask_args(node.exc)
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        if isinstance(func, ast.Attribute) and (
            func.attr in LOG_METHODS
            or (
                func.attr == "__init__"
                and isinstance(func.value, ast.Call)
                and isinstance(func.value.func, ast.Name)
                and func.value.func.id == "super"
            )
        ):
            self._mask_args(node)
        return self.generic_visit(node)

    @staticmethod
    def _mask_args(call: ast.Call) -> None:
        call.args = [_blank(arg) for arg in call.args]


def _blank(arg: ast.expr) -> ast.expr:
    """``arg`` with its message text blanked: a string literal with a space in it, or the literal
    parts of an f-string. The expressions inside an f-string are kept as they are: a mutant there
    (``", ".join(None)``, ``d["XXkeyXX"]``) can raise instead of formatting, which is behaviour."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and " " in arg.value:
        return ast.Constant(value="<message>")
    if isinstance(arg, ast.JoinedStr):
        arg.values = [
            ast.Constant(value="<message>") if isinstance(part, ast.Constant) else part
            for part in arg.values
        ]
    return arg


class _CaseFold(ast.NodeTransformer):
    """Lower-cases every string literal, so that two functions that differ only in the case of
    their strings compare equal."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str):
            return ast.Constant(value=node.value.lower())
        return node


def _masked_functions(mutated_file: Path, *, fold_case: bool = False) -> dict[str, str]:
    """Every function of mutmut's generated file (originals and mutants), by name, as a dump of
    its AST with messages blanked out (and, with ``fold_case``, every string lower-cased) and its
    name removed, ready to compare."""
    tree = _MessageMask().visit(ast.parse(mutated_file.read_text(encoding="utf-8")))
    if fold_case:
        tree = _CaseFold().visit(tree)
    dumps: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "__mutmut_" in node.name:
            name, node.name = node.name, ""
            dumps[name] = ast.dump(node)
    return dumps


def _message_only(
    survivors: list[str], module: str, mutated_file: Path, *, fold_case: bool = False
) -> set[str]:
    """The surviving mutants of one file that change nothing but message text (with
    ``fold_case``: nothing but message text and the case of strings)."""
    if not survivors or not mutated_file.exists():
        return set()
    dumps = _masked_functions(mutated_file, fold_case=fold_case)
    found: set[str] = set()
    for key in survivors:
        function = key.removeprefix(module + ".")
        original = function.partition("__mutmut_")[0] + "__mutmut_orig"
        if function in dumps and dumps.get(original) == dumps[function]:
            found.add(key)
    return found


def _module_name(source: Path) -> str:
    """The prefix mutmut gives this file's mutant names (an ``__init__`` takes its package's)."""
    dotted = ".".join(source.with_suffix("").parts)
    return dotted.removesuffix(".__init__")


def summarise(source: Path) -> Counter[str] | None:
    """Counts for one source file, or None when mutmut has no verdicts for it."""
    meta = MUTANTS / f"{source}.meta"
    if not meta.exists():
        return None
    verdicts: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))[
        "exit_code_by_key"
    ]
    if not verdicts:
        return None
    status = {key: status_by_exit_code[code] for key, code in verdicts.items()}
    survivors = [key for key, s in status.items() if s == "survived"]
    module, mutated = _module_name(source), MUTANTS / source
    message_only = _message_only(survivors, module, mutated)
    case_only: set[str] = set()
    if source.name.startswith(CASE_BLIND_PREFIX):
        case_only = _message_only(survivors, module, mutated, fold_case=True) - message_only
    counts: Counter[str] = Counter(
        total=len(status), survived=len(survivors) - len(message_only) - len(case_only)
    )
    counts["msg-only"] = len(message_only)
    counts["case-only"] = len(case_only)
    for s in status.values():
        if s in DETECTED:
            counts["killed"] += 1
        elif s == "no tests":
            counts["no tests"] += 1
        elif s != "survived":
            counts["other"] += 1
    return counts


def _row(name: str, counts: Counter[str]) -> str:
    """One line of the table; message-only and case-only survivors are left out of the
    percentage."""
    counted = counts["total"] - counts["msg-only"] - counts["case-only"]
    percent = f"{100 * counts['killed'] / counted:.1f}" if counted else "-"
    cells = [name, *(str(counts[c]) for c in COLUMNS[1:-1]), percent]
    return f"{cells[0]:<34}" + "".join(f"{cell:>10}" for cell in cells[1:])


def _all_sources() -> list[Path]:
    """Every file mutmut has verdicts for under sim/billing (``mutants/<path>.meta``)."""
    metas = (MUTANTS / DEFAULT_SOURCES).glob("*.py.meta")
    return sorted(meta.relative_to(MUTANTS).with_suffix("") for meta in metas)


def main(argv: list[str]) -> int:
    """Print the table; exits 0 whatever the score, as it reports and does not gate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", type=Path, help="source files (default: all)")
    sources: list[Path] = parser.parse_args(argv).sources or _all_sources()
    print(f"{COLUMNS[0]:<34}" + "".join(f"{c:>10}" for c in COLUMNS[1:]))
    total: Counter[str] = Counter()
    for source in sources:
        counts = summarise(source)
        if counts is None:
            print(f"{source!s:<34}  no results: not mutated, or mutmut has not run")
            continue
        print(_row(str(source), counts))
        total.update(counts)
    if len(sources) > 1:
        print(_row("all", total))
    print(
        "\nkilled: killed + timeout. msg-only: survivors that change only an error or log message."
        "\ncase-only: survivors in sqlite_*.py that change only the case of SQL text or Row keys."
        "\nBoth are left out of killed %. other: not checked yet, suspicious, segfault, skipped."
        "\nSurvivors: .venv/bin/mutmut results; one diff: .venv/bin/mutmut show <name>."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
