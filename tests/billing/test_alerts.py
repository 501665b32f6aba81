"""The Prometheus alerting rules (``deploy/prometheus/alerts.yml``): well formed, each with a
runbook section in ``docs/operations.md`` that states its volume floor and its ``for:``, every
ratio guarded by a volume floor, and every expression built only of metrics and labels the
billing module exports (a renamed metric fails here, not silently in production). Where
promtool is installed, its own checks and unit tests (``alerts_test.yml``) run too; without it
they are skipped, unless ``REQUIRE_PROMTOOL=1`` (CI, which installs Debian's ``prometheus``)
makes that a failure."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.billing.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool")

#: The PromQL functions the rules may call, and its keywords.
FUNCTIONS = {"sum", "rate", "increase", "histogram_quantile", "max", "min", "avg", "count"}
KEYWORDS = {"and", "or", "unless", "bool", "on", "ignoring", "group_left", "group_right"}
DURATION = re.compile(r"^[0-9]+[smhd]$")
IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def _series() -> dict[str, set[str]]:
    """Every series name a query may use, with its labels (a histogram's three included)."""
    names = {}
    for name, labels in METRICS.items():
        names[name] = set(labels)
        if not name.endswith("_total"):  # the histogram
            names[f"{name}_bucket"] = {*labels, "le"}
            names[f"{name}_sum"] = names[f"{name}_count"] = set(labels)
    return names


def problems(expr: str) -> tuple[list[str], set[str]]:
    """What is wrong with ``expr`` (unknown metrics, labels, functions), and the labels its
    result keeps by ``by (...)``."""
    series = _series()
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string values say nothing of names
    found = []
    grouped = {g.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", text)
               for g in group.split(",") if g.strip()}  # fmt: skip
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", text)
    used: set[str] = set()
    for name, matchers in re.findall(rf"({IDENT})\s*\{{([^}}]*)\}}", text):
        for label in re.findall(rf"({IDENT})\s*(?:=~|!~|!=|=)", matchers):
            if label not in series.get(name, set()):
                found.append(f"label {label} of {name}")
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    for name, call in re.findall(rf"({IDENT})\s*(\(?)", text):
        if call:
            if name not in FUNCTIONS:
                found.append(f"function {name}")
        elif name not in KEYWORDS:
            if name in series:
                used.add(name)
            else:
                found.append(f"metric {name}")
    labels = set().union(*(series[name] for name in used)) if used else set()
    found += [f"grouping label {g}" for g in sorted(grouped - labels)]
    return found, grouped


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _anchors() -> set[str]:
    """GitHub's anchors of the headings of ``docs/operations.md``."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", OPERATIONS.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_the_checker_refuses_what_the_module_does_not_export() -> None:
    """A metric, a label or a grouping that does not exist is named; a valid query is clean."""
    assert problems('sum by (type) (increase(topup_dead_letters_total{type="x"}[1h]))') == (
        [], {"type"}
    )  # fmt: skip
    assert problems("rate(topup_charge_total[5m])")[0] == ["metric topup_charge_total"]
    assert problems('rate(topup_charges_total{code="x"}[5m])')[0] == [
        "label code of topup_charges_total"
    ]
    assert problems("sum by (user) (rate(topup_webhooks_total[5m]))")[0] == ["grouping label user"]
    assert problems("predict_linear(topup_suspensions_total[1h], 60)")[0] == [
        "function predict_linear"
    ]


def test_every_group_is_named_and_every_alert_is_unique() -> None:
    """The file is a Prometheus rules file: named groups of alerting rules, names unique."""
    document = yaml.safe_load(RULES.read_text())
    assert [set(group) for group in document["groups"]] == [{"name", "rules"}]
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names)) >= 4
    assert all(re.fullmatch(r"Topup[A-Z][A-Za-z]+", name) for name in names)


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_rule_uses_only_exported_metrics_and_has_a_runbook(rule: dict[str, Any]) -> None:
    """Each rule: only exported metrics and labels; a ``for`` duration; a severity; a summary,
    a description and a runbook that is a section of ``docs/operations.md``; templates that
    name only labels the expression keeps."""
    assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
    found, grouped = problems(rule["expr"])
    assert found == []
    assert DURATION.match(rule["for"])
    assert rule["labels"] == {"severity": rule["labels"]["severity"]}
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook"}
    page, _, anchor = annotations["runbook"].partition("#")
    assert page == "docs/operations.md"
    assert anchor == rule["alert"].lower() and anchor in _anchors()
    templated = " ".join(annotations.values())
    assert set(re.findall(r"\$labels\.(\w+)", templated)) <= grouped


def test_the_alerts_cover_failures_unknowns_stuck_attempts_and_webhooks() -> None:
    """Payment failures, unknown outcomes, stuck attempts and webhook failures each alert."""
    used = " ".join(rule["expr"] for rule in _rules())
    for metric in (
        "topup_charges_total",
        "topup_unknown_outcomes_total",
        "topup_stuck_attempts_total",
        "topup_webhooks_total",
        "topup_dead_letters_total",
    ):
        assert metric in used


#: A ratio rule: ``sum(rate(<part>[w])) / sum(rate(<whole>[w])) > x``, and its volume floor,
#: ``and sum(increase(<whole>[w])) >= n`` (the whole as divided by, over the same window).
RATIO = re.compile(
    r"/\s*sum\(rate\((?P<whole>[^\[]+)\[(?P<window>\w+)\]\)\)\s*>\s*[0-9.]+\s*"
    r"and\s+sum\(increase\((?P<floored>[^\[]+)\[(?P<floor_window>\w+)\]\)\)\s*>=\s*(?P<floor>\d+)\s*$"
)


def floor_of(expr: str) -> int | None:
    """The volume floor of a ratio rule, None for a rule that divides nothing; a ratio whose
    floor is missing, or counts other series or another window than it divides by, is refused."""
    if "/" not in expr:
        return None
    found = RATIO.search(expr)
    assert found, f"a ratio without a volume floor over what it divides by: {expr}"
    assert found["floored"] == found["whole"] and found["floor_window"] == found["window"]
    return int(found["floor"])


def test_the_floor_check_refuses_a_ratio_without_its_floor() -> None:
    """A floor over other series, another window or none at all is refused."""
    ratio = 'sum(rate(x_total{a="1"}[10m])) / sum(rate(x_total[10m])) > 0.1'
    assert floor_of(f"{ratio} and sum(increase(x_total[10m])) >= 20") == 20
    assert floor_of("sum(increase(x_total[1h])) > 0") is None
    for wrong in ("", " and sum(increase(x_total[30m])) >= 20",
                  ' and sum(increase(x_total{a="1"}[10m])) >= 20'):  # fmt: skip
        with pytest.raises(AssertionError):
            floor_of(ratio + wrong)


def _section(alert: str) -> str:
    """The text of ``docs/operations.md`` under the heading of ``alert``, to the next heading."""
    text = OPERATIONS.read_text()
    start = text.index(f"### {alert}\n")
    end = text.find("\n#", start + 1)
    return text[start : end if end > 0 else None]


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_every_ratio_has_a_volume_floor_that_the_runbook_states(rule: dict[str, Any]) -> None:
    """A ratio fires only on a volume in its window (2 declines of 3 charges are not a rate),
    and each runbook section states the rule's floor (or that it has none) and its ``for:``,
    so that an operator reading it knows what made it fire."""
    floor = floor_of(rule["expr"])
    lead = _section(rule["alert"]).split("\n\n")[1]
    assert f"`for: {rule['for']}`" in lead
    assert (f"at least {floor}" if floor else "no volume floor") in " ".join(lead.split())


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    """``promtool check rules`` parses every expression in full; ``promtool test rules`` runs
    ``alerts_test.yml``: when each alert fires, when its floor or its ``for:`` keeps it quiet,
    and what its annotations say."""
    if PROMTOOL is None:
        reason = "promtool is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{reason}, and REQUIRE_PROMTOOL=1 says it must be")
        pytest.skip(reason)
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run(
            [str(PROMTOOL), *command], cwd=RULES.parent, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
