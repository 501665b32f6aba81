"""A short end-to-end run of the billing core under a virtual clock (``make demo``).

Two users spend 300 credits every 10 virtual minutes for a day, with auto top-up at 1,000 credits
(+10,000 credits for 10.00 EUR, cooldown 1 hour). Ada's card works. Bob's card is declined: after
three declines his auto top-up is suspended, he runs dry, and at noon he saves a new card, which
lifts the suspension. The script prints what happened and checks that each balance equals its
ledger. Everything is in-process: fakeredis, SQLite in memory, and a scripted payment gateway.
"""

from __future__ import annotations

import fakeredis

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    InlineRunner,
    InsufficientCredits,
    ManualClock,
    RecordingNotifier,
    SQLiteStore,
    Vault,
)
from sim.billing.testing import ScriptedGateway

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
USERS = ("ada", "bob")


def _at(timestamp: float) -> str:
    seconds = int(timestamp - START)
    return f"+{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def main() -> int:
    """Run the demo; return a process exit code (1 if the books do not balance)."""
    clock = ManualClock(START)
    store = SQLiteStore(":memory:")
    gateway = ScriptedGateway(cards={"pm_bob_old": "declined:insufficient_funds"})
    notifier = RecordingNotifier()
    billing = BillingService(
        clock=clock,
        cache=fakeredis.FakeRedis(),
        store=store,
        gateway=gateway,
        notifier=notifier,
        tasks=InlineRunner(),
        vault=Vault(Vault.generate_master_key()),
    )
    settings = AutoTopupSettings(enabled=True, threshold=1_000, amount=10_000, currency="eur")
    for user in USERS:
        billing.create_user(user, email=f"{user}@example.com", balance=3_000)
        billing.save_payment_method(user, f"cus_{user}", f"pm_{user}_old")
        billing.update_settings(user, settings)

    print("topup-sim demo: auto top-up at <= 1,000 credits, +10,000 credits for 10.00 EUR,")
    print("cooldown 1 h; each user spends 300 credits every 10 virtual minutes for a day.\n")
    refused = dict.fromkeys(USERS, 0)
    for _ in range(6 * 24):
        clock.advance(600)
        if clock.now() - START == 12 * 3600:
            billing.save_payment_method("bob", "cus_bob", "pm_bob_new")
            print(f"{_at(clock.now())}  bob  saves a new card (lifts the suspension)")
        for user in USERS:
            try:
                done = billing.deduct_credits(user, 300)
                balance, attempt = done.balance, done.attempt
            except InsufficientCredits as exc:
                if not refused[user]:
                    print(f"{_at(clock.now())}  {user}  runs dry (balance {exc.balance})")
                refused[user] += 1
                balance, attempt = exc.balance, exc.attempt
            if attempt is not None:
                record = store.attempts(user)[-1]
                result = record.decline_code or f"credited, balance {billing.balance(user)}"
                print(
                    f"{_at(clock.now())}  {user}  at {balance} credits: top-up #{attempt} "
                    f"{record.status} ({result})"
                )

    print("\nnotifications:")
    for note in notifier.sent:
        print(f"  {_at(note.at)}  {note.user_id}  {note.kind}")
    print("\nfinal:")
    ok = True
    for user in USERS:
        balance, ledger = billing.balance(user), store.ledger_sum(user)
        ok &= balance == ledger
        print(
            f"  {user}  balance {balance:>6}  ledger sum {ledger:>6}  refused requests"
            f" {refused[user]:>3}  auto top-up {store.get_user(user).state}"
        )
    print(f"\ncharges that moved money: {len(gateway.succeeded_keys)}")
    print("books balance: every balance equals its ledger" if ok else "BOOKS DO NOT BALANCE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
