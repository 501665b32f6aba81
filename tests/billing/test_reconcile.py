"""The reconcile command: wired like the server, it reports per user and in total."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sim.billing import BillingService, ManualClock, MemoryCache, RecordingNotifier, Vault
from sim.billing import SQLiteStore as Store
from sim.billing.reconcile import main
from sim.billing.tasks import InlineRunner
from sim.billing.testing import ScriptedGateway

KEY = bytes(range(32))


def test_command_reconciles_a_store_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m sim.billing.reconcile`` reads the server's store and keys and says what it
    found: here two users, nothing to repair, and ``--user`` narrows it to one."""
    db = str(tmp_path / "billing.sqlite")
    billing = BillingService(
        clock=ManualClock(), cache=MemoryCache(), store=Store(db), gateway=ScriptedGateway(),
        notifier=RecordingNotifier(), tasks=InlineRunner(), vault=Vault(KEY),
    )  # fmt: skip
    billing.create_user("ada", balance=500)
    billing.create_user("bob")
    monkeypatch.setenv("TOPUP_MASTER_KEY", base64.b64encode(KEY).decode())
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["--db", db]) == 0
    assert capsys.readouterr().out.splitlines() == ["reconciled 2 users: 0 needed repair"]
    assert main(["--db", db, "--user", "bob"]) == 0
    assert capsys.readouterr().out.splitlines() == ["reconciled 1 users: 0 needed repair"]
