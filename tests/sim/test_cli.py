"""The command line: run and sweep print readable tables, write frames, explain their options, and
every mistake a new user makes is one line on stderr with a documented exit status."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from sim import Results, ScenarioError, Violation, run, sweep
from sim.backends import BackendUnavailable, get_backend
from sim.cli import main
from sim.invariants import InvariantViolation
from sim.results import REPORT_HEADER, REPORT_SECTIONS
from sim.stats import INTERVALS

from .conftest import SCENARIOS, constant, one_group

SMALL = ["--users", "10", "--days", "1", "--backend", "memory"]
SECTIONS = ["Requests", "Top-ups", "Failures", "Money"]
INVARIANTS_HELD = "Invariants: all held (checked against Stripe's records at the end of the run)"


def one_line(err: str) -> str:
    """The single line an error printed, failing the test if it printed more (a traceback)."""
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


def test_run_prints_the_summary_and_writes_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` prints the summary in sections, writes Parquet and CSV on request, and says so."""
    code = main(["run", str(SCENARIOS / "baseline.toml"), *SMALL, "--out", str(tmp_path), "--csv"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("baseline: 10 users, 1 day, ")
    assert [line for line in out if line in SECTIONS] == SECTIONS
    assert f"wrote {tmp_path / 'summary.parquet'}" in out
    assert pd.read_parquet(tmp_path / "summary.parquet").loc[0, "users"] == 10
    assert (tmp_path / "events.csv").exists()


def test_summary_header_states_the_real_size_and_every_figure_has_separators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --users and --days the header gives the run's own size (not the file's description),
    every figure of four digits or more has thousands separators, and the last line says the
    invariants held."""
    args = ["run", str(SCENARIOS / "baseline.toml"), "--users", "50", "--days", "3"]
    assert main([*args, "--backend", "memory", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = pd.read_parquet(tmp_path / "summary.parquet").iloc[0]
    made = summary["requests"] + summary["refused"] + summary["request_failures"]
    assert made >= 1_000  # so the header's count needs a separator
    lines = out.splitlines()
    assert lines[0] == f"baseline: 50 users, 3 days, {made:,} requests (seed 1, memory backend)"
    assert "1,000 users, 30 days" not in out
    report = "\n".join(line for line in lines if not line.startswith("wrote "))
    assert not re.search(r"\d{4}", report), report
    assert f"{summary['credits_used']:,} credits" in out
    assert lines[-1] == INVARIANTS_HELD


def test_summary_shows_the_description_when_the_file_sets_the_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without overrides the scenario's own description follows the header (it describes the
    size the run has)."""
    text = (SCENARIOS / "baseline.toml").read_text()
    text = re.sub(r"(?m)^users = .*$", "users = 12", text)
    text = re.sub(r"(?m)^days = .*$", "days = 1", text)
    text = re.sub(r"(?m)^description = .*$", 'description = "twelve users, one day"', text)
    path = tmp_path / "small.toml"
    path.write_text(text)
    assert main(["run", str(path), "--backend", "memory"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("baseline: 12 users, 1 day, ")
    assert lines[1] == "twelve users, one day"


GOLDEN_SUMMARY = {
    "scenario": "golden", "seed": 7, "users": 1_234, "days": 2.5, "requests": 1_234_567,
    "refused": 8_901, "request_failures": 1, "users_ran_dry": 12, "dry_per_1000_users": 9.724,
    "dry_hours_per_user": 1.0, "users_churned": 3, "topups": 2_345, "topups_per_user_month": 22.796,
    "requests_held_by_limit": 40, "users_held_by_limit": 2,
    "failed_topups": 17, "declines": 10, "action_required": 5, "topup_errors": 2,
    "suspensions": 1, "charge_calls": 2_400, "transient_errors": 38, "credits_used": 98_765_432,
    "credits_bought": 23_450_000, "subscription_invoices": 3, "subscription_credits": 33_000,
    "webhook_deliveries": 2_400, "webhook_duplicates": 4, "webhook_failures": 0,
    "webhook_unreachable": 6, "cache_flushes": 0, "store_faults": 1, "revenue_eur": 23_450.5,
    "revenue_usd": 12.0, "revenue_jpy": 4_000.0, "user_days": 3_085.0,
}  # fmt: skip

GOLDEN_REPORT = """\
golden: 1,234 users, 2.5 days, 1,243,469 requests (seed 7, memory backend)
A run with round numbers

Requests
  served                                     1,234,567
  refused: balance too low                       8,901
  failed: store unavailable                          1
  users who ran dry                                 12
  users who ran dry, per 1,000 users             9.724
  time dry, mean per user                            1 hour
  users who left after running dry                   3
  used by requests                          98,765,432 credits

Top-ups
  succeeded                                      2,345
  succeeded, per user per 30 days               22.796
  requests whose top-up the limit held              40
  users held by their monthly limit                  2
  charge calls to Stripe, retries included       2,400
  subscription invoices paid                         3
  webhook deliveries, every try                  2,400

Failures
  failed top-ups, every cause                       17
  declined by the card                              10
  needed the customer to authenticate                5
  not charged: Stripe unreachable                    2
  auto top-ups suspended                             1
  charge calls that failed transiently              38
  duplicate webhook deliveries                       4
  webhook deliveries that failed                     0
  deliveries to a down webhook endpoint              6
  cache flushes injected                             0
  store faults injected                              1

Money
  bought with top-ups                       23,450,000 credits
  granted by subscriptions                      33,000 credits
  revenue                                    23,450.50 EUR
  revenue                                        12.00 USD
  revenue                                        4,000 JPY"""


def golden_results() -> Results:
    """Results whose summary is the hand-written row above (no simulation involved)."""
    scenario = replace(one_group(constant(3_600, 10)), description="A run with round numbers")
    empty = pd.DataFrame()
    return Results(scenario, 7, "memory", empty, empty, pd.DataFrame([GOLDEN_SUMMARY]))


def test_report_matches_the_golden_text() -> None:
    """The printed summary, exactly: header with the real size, titled sections, labels with
    units (singular for one), separators throughout, money to its currency's minor unit."""
    assert golden_results().report() == GOLDEN_REPORT


def test_report_leaves_out_the_description_on_request() -> None:
    """``description=False`` (the CLI's choice when --users or --days changed the size) drops
    the scenario's description line and nothing else."""
    lines = GOLDEN_REPORT.splitlines()
    assert golden_results().report(description=False).splitlines() == [lines[0], *lines[2:]]


def test_report_places_every_summary_column(tmp_path: Path) -> None:
    """Every column of a real run's summary is in the header or on a line of its own, so a
    figure added to the summary cannot silently vanish from the printout."""
    columns = set(run(one_group(constant(3_600, 10)), backend="memory").summary.columns)
    placed = [line.column for _, lines in REPORT_SECTIONS for line in lines]
    assert len(placed) == len(set(placed))
    intervals = {f"{c}_{end}" for c in INTERVALS for end in ("ci_low", "ci_high")}
    assert set(INTERVALS) <= set(placed)
    assert columns == {*placed, *REPORT_HEADER, *intervals}


def test_seed_option_changes_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """--seed overrides the scenario's seed, and the header says which seed ran."""
    main(["run", str(SCENARIOS / "chaos.toml"), *SMALL, "--seed", "99"])
    assert capsys.readouterr().out.splitlines()[0].endswith("(seed 99, memory backend)")


def test_bad_scenario_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file is reported on stderr with its key, and the exit status is 2."""
    path = tmp_path / "bad.toml"
    path.write_text("users = 0\n")
    assert main(["run", str(path)]) == 2
    assert "bad.toml: users: must be >= 1" in one_line(capsys.readouterr().err)


def test_missing_scenario_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that does not exist: one line naming it and where the scenarios are."""
    path = tmp_path / "basline.toml"
    assert main(["run", str(path)]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{path}: no such file" in err and "scenarios/baseline.toml" in err


def test_directory_as_scenario_is_one_line_naming_its_files(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A directory: one line saying so and naming a scenario file in it to give instead."""
    assert main(["run", str(SCENARIOS)]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{SCENARIOS}: is a directory" in err and str(SCENARIOS / "baseline.toml") in err


def test_binary_file_as_scenario_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not text (a Parquet file given by mistake): one line, exit 2."""
    path = tmp_path / "summary.parquet"
    path.write_bytes(b"PAR1\xff\xfe\x00\x81")
    assert main(["run", str(path)]) == 2
    assert f"{path}: not a text file" in one_line(capsys.readouterr().err)


def test_redis_backend_without_redis_url_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--backend redis with REDIS_URL unset: one line naming the variable and the way out."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["run", str(SCENARIOS / "baseline.toml"), *SMALL, "--backend", "redis"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "REDIS_URL" in err and "fakeredis" in err


def test_unreachable_redis_is_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Redis that does not answer is found by a ping before the run, and reported in one line
    with its address and never the password in REDIS_URL."""
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:9/0")
    assert main(["run", str(SCENARIOS / "baseline.toml"), *SMALL, "--backend", "redis"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "127.0.0.1:9" in err and "fakeredis" in err and "hunter2" not in err


def test_unreachable_redis_is_a_typed_error_from_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ping happens when the backend opens, as a BackendUnavailable (still a ValueError for
    callers that caught the missing REDIS_URL that way)."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    with pytest.raises(
        BackendUnavailable, match=r"the Redis at 127\.0\.0\.1:9 \(REDIS_URL\) did not answer"
    ):
        get_backend("redis").open()
    assert issubclass(BackendUnavailable, ValueError)


def test_sweep_with_redis_unset_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep checks the backend before starting its points: one line, exit 2."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    args = ["sweep", str(SCENARIOS / "threshold_grid.toml"), "--users", "2", "--days", "0.25"]
    assert main([*args, "--backend", "redis", "--workers", "1"]) == 2
    assert "REDIS_URL" in one_line(capsys.readouterr().err)


def test_a_negative_seed_is_one_line_from_the_cli_and_a_scenario_error_from_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--seed meets the rule the file's ``seed`` meets (a whole number >= 0): one line, exit 2,
    where numpy's seeding had printed a traceback, and no --out folder made; ``run`` and
    ``sweep`` raise ScenarioError before anything runs."""
    baseline, out = SCENARIOS / "baseline.toml", tmp_path / "frames"
    assert main(["run", str(baseline), *SMALL, "--seed", "-1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "baseline.toml: seed: must be >= 0, got -1" in one_line(captured.err)
    assert captured.out == "" and not out.exists()
    with pytest.raises(ScenarioError, match=r"seed: must be >= 0, got -7"):
        run(SCENARIOS / "baseline.toml", seed=-7)
    with pytest.raises(ScenarioError, match=r"seed: must be a whole number"):
        sweep(SCENARIOS / "threshold_grid.toml", seed=1.5, workers=1)  # type: ignore[arg-type]


def test_sweeping_a_file_without_a_grid_is_one_line_saying_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A scenario without a [sweep] table: one line naming the key, and `run` as the way to
    simulate it (it was a ValueError's traceback); still a ValueError for Python callers."""
    assert main(["sweep", str(SCENARIOS / "baseline.toml"), *SMALL]) == 2
    err = one_line(capsys.readouterr().err)
    assert "baseline.toml: sweep: no [sweep] table" in err and "python -m sim run" in err
    assert issubclass(ScenarioError, ValueError)


@pytest.mark.parametrize(
    ("workers", "message"),
    [("0", "0 runs nothing; give 1 or more, or -1 for one per core"), ("x", "'x' is not a whole")],
)
def test_workers_must_be_a_whole_number_other_than_0(
    workers: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--workers 0 is refused as a bad option (joblib's ValueError was a traceback)."""
    args = ["sweep", str(SCENARIOS / "threshold_grid.toml"), *SMALL, "--workers", workers]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert f"error: argument --workers: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_out_folder_that_cannot_be_made_is_one_line_before_anything_runs(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out naming a file, or a folder under a file, is refused before the run (it failed after
    a whole run, with a traceback and the run's frames lost)."""
    scenario = SCENARIOS / ("baseline.toml" if command == "run" else "threshold_grid.toml")
    a_file = tmp_path / "frames"
    a_file.write_text("not a folder")
    for out, reason in [(a_file, "is a file; give a folder"), (a_file / "sub", "cannot create")]:
        assert main([command, str(scenario), *SMALL, "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert f"--out {out}: {reason}" in one_line(captured.err)
        assert captured.out == ""  # nothing ran


def test_a_scheduler_address_that_is_none_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """--scheduler with no port: one line naming the address and what to give, exit 2."""
    args = ["sweep", str(SCENARIOS / "threshold_grid.toml"), *SMALL, "--scheduler", "nonsense"]
    assert main(args) == 2
    err = one_line(capsys.readouterr().err)
    assert "dask scheduler 'nonsense'" in err and "tcp://host:port" in err


def test_broken_invariants_exit_1_and_the_last_line_names_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that breaks invariants lists every breach and ends with a line naming the rules
    broken, with the exit status 1."""
    violations = [
        Violation("balance", "u1", "cache 5 != store 6"),
        Violation("cooldown", "u2", "two charges 10 s apart"),
        Violation("balance", "u3", "cache 1 != store 2"),
    ]

    def broken(*args: object, **kwargs: object) -> Results:
        raise InvariantViolation(violations)

    monkeypatch.setattr("sim.cli.run", broken)
    assert main(["run", str(SCENARIOS / "baseline.toml"), *SMALL]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "  [cooldown] u2: two charges 10 s apart" in err
    assert err[-1] == "Invariants: 2 did not hold: balance (2 breaches), cooldown (1 breach)"


def test_closed_stdout_exits_quietly_like_a_unix_tool() -> None:
    """`python -m sim run ... | head`: when the reader has gone, no traceback and the status a
    shell reports for a tool that SIGPIPE ended (128 + 13), not 1, which means a failed run."""
    command = [sys.executable, "-m", "sim", "run", str(SCENARIOS / "baseline.toml"), *SMALL]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader is gone before the summary is written
        err = process.stderr.read()
    assert (process.returncode, err) == (141, b"")


def test_sweep_prints_one_row_per_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sweep` prints the grid columns with the figures, and writes sweep.parquet."""
    args = ["sweep", str(SCENARIOS / "threshold_grid.toml"), "--users", "2", "--days", "0.25"]
    code = main([*args, "--backend", "memory", "--workers", "2", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split()[:3] == [
        "auto_topup.threshold", "auto_topup.amount", "billing.cooldown_hours"
    ]  # fmt: skip
    assert len(pd.read_parquet(tmp_path / "sweep.parquet")) == 36
    assert len(list((tmp_path / "points").glob("*.parquet"))) == 36


@pytest.mark.parametrize("out", [True, False])
def test_interrupted_sweep_says_what_it_kept(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    out: bool,
) -> None:
    """Ctrl-C during a sweep: one line saying where the finished points are (and that the same
    command resumes), status 130, no traceback."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("sim.cli.sweep", interrupted)
    args = ["sweep", str(SCENARIOS / "threshold_grid.toml"), "--backend", "memory"]
    code = main([*args, "--out", str(tmp_path)] if out else args)
    err = capsys.readouterr().err.strip()
    assert code == 130 and "\n" not in err
    expected = f"kept in {tmp_path / 'points'}; the same command resumes" if out else "--out"
    assert err.startswith("python -m sim sweep: interrupted; ") and expected in err


def test_help_explains_every_option_and_the_exit_statuses() -> None:
    """`python -m sim run --help` describes each option and what the exit status means."""
    result = subprocess.run(
        [sys.executable, "-m", "sim", "run", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--seed", "--out", "--csv", "--backend", "--users", "--days"):
        assert option in result.stdout
    assert "REDIS_URL" in result.stdout
    assert "exit status" in result.stdout.lower() and "141" in result.stdout
