"""``python -m sim.billing.serve`` as a new user runs it: a throw-away database unless ``--db``,
``--demo-user`` that can be run again, and one line on stderr for everything that stops it.

uvicorn never starts here: ``uvicorn.run`` is replaced by a stand-in that records its call.
"""

from __future__ import annotations

import argparse
import base64
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sim.billing import SQLiteStore
from sim.billing.serve import WEBHOOK_SECRET_ENV, _port, main
from sim.stripe_emulator import EmulatorServer

UNREACHABLE = "http://127.0.0.1:9"
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test in its own working directory, on the in-process cache, with no secret set."""
    monkeypatch.chdir(tmp_path)
    for name in ("REDIS_URL", WEBHOOK_SECRET_ENV, "STRIPE_API_KEY", "TOPUP_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The calls ``main`` made to ``uvicorn.run`` (none means it stopped before serving)."""
    calls: list[dict[str, Any]] = []

    def run(app: object, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr("sim.billing.serve.uvicorn.run", run)
    return calls


@pytest.fixture
def stripe_url() -> Iterator[str]:
    """The emulator over HTTP on a free port, as ``python -m sim.stripe_emulator`` serves it."""
    with EmulatorServer(port=0, deliver_webhooks=False) as server:
        yield server.url


def one_line(message: object) -> str:
    """``message`` as text, failing the test if it spans more than one line."""
    text = str(message).rstrip("\n")
    assert "\n" not in text, text
    return text


def demo(out: str) -> tuple[str, str]:
    """The bearer token and TOTP secret that ``--demo-user`` printed."""
    token = re.search(r"bearer token (\S+)", out)
    secret = re.search(r"secret=([A-Z2-7]+)", out)
    assert token and secret, out
    return token.group(1), secret.group(1)


def test_unreachable_emulator_is_one_line_without_stripes_support_address(
    served: list[dict[str, Any]],
) -> None:
    """No emulator and no secret: one line with the URL and what to do; stripe-python's four
    lines ending with its support address are not passed on."""
    with pytest.raises(SystemExit) as exit_:
        main(["--stripe-url", UNREACHABLE])
    message = one_line(exit_.value.code)
    assert UNREACHABLE in message and "start the emulator" in message
    assert "support@stripe.com" not in message and not served


def test_demo_user_against_unreachable_stripe_is_one_line(
    served: list[dict[str, Any]],
) -> None:
    """With a webhook secret nothing is registered, so the demo user's customer is the first
    Stripe call: its failure is one line naming the user, the URL and what to do."""
    args = ["--stripe-url", UNREACHABLE, "--webhook-secret", "whsec_x", "--demo-user", "ada"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    message = one_line(exit_.value.code)
    assert "ada" in message and UNREACHABLE in message and "start the emulator" in message
    assert "support@stripe.com" not in message and not served


def test_database_is_temporary_unless_db_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stripe_url: str
) -> None:
    """Without --db the database lives in a fresh temporary folder, gone when the server stops;
    nothing is left in the working directory."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    seen: list[Path] = []  # the databases that exist while it serves
    monkeypatch.setattr(
        "sim.billing.serve.uvicorn.run", lambda app, **kw: seen.extend(temp.glob("*/*.sqlite"))
    )
    main(["--stripe-url", stripe_url, "--demo-user", "ada"])
    assert len(seen) == 1 and seen[0].name == "billing.sqlite"
    assert not seen[0].exists() and list(temp.iterdir()) == []
    assert list(tmp_path.glob("*.sqlite")) == []


def test_demo_user_twice_reuses_the_user(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    stripe_url: str,
    served: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's command run twice on a kept database: the second run reuses ada (balance
    untouched) with a fresh TOTP secret and a new token, and serves."""
    monkeypatch.setenv("TOPUP_MASTER_KEY", MASTER_KEY)
    db = tmp_path / "kept.sqlite"
    args = ["--stripe-url", stripe_url, "--db", str(db), "--demo-user", "ada"]
    main(args)
    first = demo(capsys.readouterr().out)
    main(args)
    second = demo(capsys.readouterr().out)
    assert first[0] != second[0] and first[1] != second[1]
    assert len(served) == 2
    store = SQLiteStore(str(db))
    assert store.get_user("ada").balance == 1_500
    store.close()


def test_demo_user_under_another_master_key_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    stripe_url: str,
    served: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A kept database's user cannot be reused under another master key (the default is a new
    one per run): one line naming the setting, exit status 2, and nothing served."""
    db = str(tmp_path / "kept.sqlite")
    args = ["--stripe-url", stripe_url, "--db", db, "--demo-user", "ada"]
    monkeypatch.setenv("TOPUP_MASTER_KEY", MASTER_KEY)
    main(args)
    capsys.readouterr()
    monkeypatch.delenv("TOPUP_MASTER_KEY")
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "TOPUP_MASTER_KEY" in one_line(err) and "ada" in err
    assert len(served) == 1


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("TOPUP_MASTER_KEY", "not base64!", "TOPUP_MASTER_KEY"),
        ("TOPUP_MASTER_KEY", base64.b64encode(b"short").decode(), "TOPUP_MASTER_KEY"),
        ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL"),
        ("STRIPE_API_KEY", "sk_live_x", "live Stripe keys are refused"),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    served: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    setting: str,
    value: str,
    named: str,
) -> None:
    """A setting build_billing cannot use: one line naming it, exit 2, before any Stripe call."""
    monkeypatch.setenv(setting, value)
    with pytest.raises(SystemExit) as exit_:
        main(["--stripe-url", UNREACHABLE, "--webhook-secret", "whsec_x"])
    assert exit_.value.code == 2
    assert named in one_line(capsys.readouterr().err) and not served


def test_db_in_a_missing_folder_is_one_line(
    tmp_path: Path, served: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A --db whose folder does not exist: one line naming the path, exit 2."""
    db = tmp_path / "no" / "such" / "billing.sqlite"
    with pytest.raises(SystemExit) as exit_:
        main(["--stripe-url", UNREACHABLE, "--webhook-secret", "whsec_x", "--db", str(db)])
    assert exit_.value.code == 2
    assert str(db) in one_line(capsys.readouterr().err) and not served


@pytest.mark.parametrize(
    ("port", "said"),
    [
        ("99999", "99999 is no TCP port to serve on: give 1 to 65535"),
        ("0", "0 is no TCP port to serve on"),
        ("http", "'http' is not a whole number"),
    ],
)
def test_a_port_that_is_none_is_a_bad_option(
    served: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], port: str, said: str
) -> None:
    """--port outside 1 to 65535 is refused before anything starts (99999 had reached Stripe
    as the webhook URL's port)."""
    with pytest.raises(SystemExit) as exit_:
        main(["--stripe-url", UNREACHABLE, "--webhook-secret", "whsec_x", "--port", port])
    assert exit_.value.code == 2
    assert f"error: argument --port: {said}" in capsys.readouterr().err and not served


def test_the_port_range_is_tcps_own_from_1() -> None:
    """Both ends of the range are ports (1 and 65535); one past either end is not."""
    assert (_port("1"), _port("65535")) == (1, 65535)
    for outside in ("0", "65536"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{outside} is no TCP port"):
            _port(outside)


def test_help_explains_the_temporary_database(capsys: pytest.CaptureFixture[str]) -> None:
    """--help says where the data goes without --db, and that it is deleted on exit."""
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--db" in out and "temporary folder" in out and "deleted" in out


def test_demo_user_prints_the_billing_page_signed_in(
    stripe_url: str, served: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--demo-user`` prints the page's address on the chosen port with the user's token in
    its fragment, and the app it serves answers that page."""
    main(["--stripe-url", stripe_url, "--demo-user", "ada", "--port", "8123"])
    out = capsys.readouterr().out
    token, _ = demo(out)
    assert f"billing page: http://127.0.0.1:8123/billing#token={token}\n" in out
    page = TestClient(served[0]["app"]).get("/billing")
    assert page.status_code == 200 and "<h1>Billing</h1>" in page.text
