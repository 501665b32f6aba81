"""Choosing the store by URL (``STORE_URL``), and the migrate command a deployment runs once.

Every error is one line naming the setting and never the URL's password. The PostgreSQL cases
need the server at ``POSTGRES_URL`` (``postgres.py``), except those where nothing answers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sim.billing import MemoryStore, SQLiteStore
from sim.billing.migrate import main as migrate_main
from sim.billing.serve import main as serve_main
from sim.billing.sqlite_schema import SCHEMA
from sim.billing.store_url import StoreUrlError, migrate_store, open_store, sqlite_path

from .postgres import postgres_schema

T0 = 1_767_225_600.0
NOWHERE = "postgresql://someone:s3cret@127.0.0.1:1/billing?connect_timeout=2"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///billing.sqlite", "billing.sqlite"),
        ("sqlite:////var/lib/billing.sqlite", "/var/lib/billing.sqlite"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls_name_their_file(url: str, path: str) -> None:
    assert sqlite_path(url) == path


def test_a_sqlite_url_opens_and_creates_the_file(tmp_path: Path) -> None:
    """The file is created, migrated and kept: a second store at the URL reads what the first
    wrote."""
    url = f"sqlite:///{tmp_path}/billing.sqlite"
    first = open_store(url)
    assert isinstance(first, SQLiteStore)
    first.create_user("u1", b"wrapped", None)
    first.close()  # type: ignore[attr-defined]
    assert open_store(url).user_ids() == ["u1"]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://root:s3cret@db/billing", "STORE_URL is a mysql:// URL: use sqlite:///"),
        ("billing.sqlite", "STORE_URL is not a URL: use sqlite:///"),
        ("sqlite://billing.sqlite", "STORE_URL: cannot open the SQLite file: a SQLite URL has"),
        (NOWHERE, "STORE_URL: cannot connect to PostgreSQL at 127.0.0.1:1/billing: "),
    ],
)
def test_an_unusable_url_is_one_line_naming_the_setting(url: str, said: str) -> None:
    with pytest.raises(StoreUrlError) as refused:
        open_store(url)
    message = str(refused.value)
    assert message.startswith(said) and "\n" not in message and "s3cret" not in message


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreUrlError, match="STORE_URL: cannot open the SQLite file"):
        open_store(f"sqlite:///{tmp_path}/no/such/billing.sqlite")


def test_migrating_an_old_sqlite_file_adds_its_columns_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file from before the monthly limit gets the column from the command, which says so;
    run again, it says the schema is up to date."""
    path = tmp_path / "billing.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(SCHEMA.replace("    auto_topup_monthly_limit INTEGER,\n", ""))
    old.close()
    assert migrate_main(["--store-url", f"sqlite:///{path}"]) == 0
    assert capsys.readouterr().out == "created column users.auto_topup_monthly_limit\n"
    assert migrate_main(["--store-url", f"sqlite:///{path}"]) == 0
    assert capsys.readouterr().out == "the schema is up to date\n"
    assert migrate_store(f"sqlite:///{tmp_path}/new.sqlite")[:2] == ["table users", "table ledger"]


def test_migrate_reads_store_url_and_names_what_it_could_not_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without an option it migrates the store at STORE_URL; without either it says what to
    give; a bad URL is one line naming where it came from, exit 2."""
    monkeypatch.delenv("STORE_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        migrate_main([])
    assert exited.value.code == 2 and "give --store-url or set STORE_URL" in capsys.readouterr().err
    monkeypatch.setenv("STORE_URL", NOWHERE)
    with pytest.raises(SystemExit) as exited:
        migrate_main([])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert "error: STORE_URL: cannot migrate PostgreSQL at 127.0.0.1:1/billing" in err
    with pytest.raises(SystemExit):
        migrate_main(["--store-url", "redis://x"])
    assert "error: --store-url is a redis:// URL" in capsys.readouterr().err


def test_migrate_then_open_postgres(capsys: pytest.CaptureFixture[str]) -> None:
    """On PostgreSQL the command creates what is missing, then finds nothing to do, and the
    store opens on what it made."""
    import psycopg

    with postgres_schema() as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as db:
            db.execute("DROP TABLE usage_requests")
        assert migrate_main(["--store-url", conninfo]) == 0
        assert capsys.readouterr().out == "created table usage_requests\n"
        assert migrate_main(["--store-url", conninfo]) == 0
        assert capsys.readouterr().out == "the schema is up to date\n"
        store = open_store(conninfo)
        assert store.user_ids() == [] and not isinstance(store, MemoryStore)
        store.close()  # type: ignore[attr-defined]


def test_serve_with_an_unreachable_store_url_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server does not start on a PostgreSQL that does not answer: one line naming
    STORE_URL, exit 2."""
    monkeypatch.setenv("STORE_URL", NOWHERE)
    with pytest.raises(SystemExit) as exited:
        serve_main(["--stripe-url", "http://127.0.0.1:9", "--webhook-secret", "whsec_x"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert "STORE_URL: cannot connect to PostgreSQL at 127.0.0.1:1/billing" in err
