"""The auto top-up's run: steps 4 and 6 of the tour in ``service.py``.

A claimed top-up is handed to the task runner, which calls :meth:`TopupRun._run_topup`: check
that it is still due and the card usable, fix the charge's terms, mark it ``charging`` and
charge through the gateway under the claim's idempotency key, then record the answer (a success
settles through ``BillingService.settle_payment``, step 5). A transient error is retried later
under the same lease; an attempt whose lease ran out is taken over by :meth:`TopupRun.recover`
and run again under the same key.

:class:`TopupRun` is part of :class:`~sim.billing.service.BillingService` (its base class),
kept here so that each module holds one part of the tour; it uses the service's ports and
helpers (``store``, ``gateway``, ``_open``, ``_publish``, ``settle_payment``...).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from .claims import TOPUP_PURPOSE, idempotency_key
from .errors import BillingError, TransientGatewayError
from .gateway import (
    ChargeDeclined,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeResult,
    ChargeSucceeded,
)
from .metrics import log_event
from .notify import Notification
from .pricing import Money, price_of
from .settings import ACTIVE, PAUSED, SUSPENDED
from .store import (
    FINAL_NOTICES,
    AttemptOutcome,
    ChargeTerms,
    PendingNotice,
    TopupAttempt,
    UserRecord,
    outbox_notice,
)
from .vault import F_CUSTOMER, F_PAYMENT_METHOD

if TYPE_CHECKING:
    from .clock import Clock
    from .gateway import PaymentGateway
    from .metrics import Metrics
    from .notify import Notifier
    from .service import BillingConfig
    from .store import Store
    from .tasks import TaskRunner

#: The service's logger: a top-up's log lines are the billing service's, wherever its code is.
log = logging.getLogger("sim.billing.service")


class TopupRun:
    """Running a claimed auto top-up to its end, and taking over one whose worker died."""

    # The service's ports, set by ``BillingService.__init__``.
    clock: Clock
    store: Store
    gateway: PaymentGateway
    notifier: Notifier
    tasks: TaskRunner
    config: BillingConfig
    metrics: Metrics

    def _run_topup(self, user_id: str, seq: int, lease: int, tries: int = 0) -> None:
        """Work on attempt ``seq`` while holding ``lease``. Runs fire-and-forget.

        An outage of the store or the cache mid-flight ends this run; the attempt stays open and
        its lease runs out, after which it is taken over and run again.
        """
        try:
            self._advance(user_id, seq, lease, tries)
        except BillingError:
            log.exception("auto top-up %s for %s stopped; it is recovered when its lease ends",
                          seq, user_id)  # fmt: skip

    def _advance(self, user_id: str, seq: int, lease: int, tries: int) -> None:
        user = self.store.get_user(user_id)
        if user.open_attempt != seq or user.lease != lease:
            return  # the attempt ended, or another worker took it over: not ours any more
        attempt = self.store.attempt(user_id, seq)
        assert attempt is not None  # an open attempt is always recorded
        if attempt.status == "claimed":
            terms = self._prepare(user, attempt, lease, tries)
            if terms is None:
                return
        else:  # charging or unknown: send exactly what was sent before
            assert attempt.credits is not None and attempt.currency is not None
            assert attempt.amount_minor is not None
            assert attempt.encrypted_payment_method_id is not None
            terms = ChargeTerms(
                attempt.credits, attempt.currency, attempt.amount_minor,
                attempt.encrypted_payment_method_id,
            )  # fmt: skip
        request = self._charge_request(user, seq, terms)
        if attempt.status != "claimed" and self._key_may_be_forgotten(attempt.claimed_at):
            self._look_up(user, seq, lease, request, tries)
            return
        try:
            result = self.gateway.charge(request)
        except TransientGatewayError as exc:
            self.metrics.charge("transient", None)
            log_event(log, logging.WARNING, "topup_charge_transient", user=user_id, attempt=seq,
                      key=request.idempotency_key, error=repr(str(exc)))  # fmt: skip
            self._retry_later(user, seq, lease, tries + 1, sent=True)
            return
        self._record_result(user, seq, lease, result, tries)

    def _key_may_be_forgotten(self, claimed_at: float) -> bool:
        """Whether Stripe may have dropped the attempt's idempotency key: its charge left no
        sooner than its claim, so a claim older than the window is the conservative test."""
        return self.clock.now() - claimed_at >= self.config.idempotency_window_seconds

    def _look_up(
        self, user: UserRecord, seq: int, lease: int, request: ChargeRequest, tries: int
    ) -> None:
        """Settle an old attempt from what Stripe holds, without sending its charge again (a
        forgotten key would make the resend a second charge). No PaymentIntent at all means
        nothing was charged: the attempt ends ``failed``."""
        try:
            found = self.gateway.find_charge(request)
        except TransientGatewayError as exc:
            log_event(log, logging.WARNING, "topup_lookup_transient", user=user.user_id,
                      attempt=seq, key=request.idempotency_key, error=repr(str(exc)))  # fmt: skip
            self._retry_later(user, seq, lease, tries + 1, sent=True)
            return
        if found is None:
            self._finish(user, seq, lease, replace(_unchanged(user, "failed"), retries=tries))
            return
        self._record_result(user, seq, lease, found, tries)

    def _prepare(
        self, user: UserRecord, attempt: TopupAttempt, lease: int, tries: int
    ) -> ChargeTerms | None:
        """Check that the claimed ``attempt`` is still due and the card usable, and fix its
        terms: the credits its claim reserved (the monthly limit was checked against them), in
        the currency of the settings.

        ``None`` when the attempt ended here (skipped, no card) or waits for a retry.
        """
        seq = attempt.seq
        settings = user.settings
        if not settings.enabled or user.state != ACTIVE or user.balance > settings.threshold:
            # Things changed since the claim (auto top-up was turned off or paused, or credits
            # arrived another way): the top-up is no longer due, so nothing is charged.
            self._finish(user, seq, lease, _unchanged(user, "skipped"))
            return None
        saved = self._saved_card(user)
        try:  # no card saved is no usable card, and asks Stripe nothing
            usable = saved is not None and self.gateway.payment_method_usable(*saved)
        except TransientGatewayError as exc:
            log_event(log, logging.WARNING, "topup_card_check_transient",
                      user=user.user_id, attempt=seq, error=repr(str(exc)))  # fmt: skip
            self._retry_later(user, seq, lease, tries + 1, sent=False)
            return None
        if not usable or user.encrypted_payment_method_id is None:
            self._finish(user, seq, lease, replace(_unchanged(user, "no_payment_method"),
                                                   state=PAUSED))  # fmt: skip
            return None
        # An attempt claimed before claims kept their credits tops up the settings' amount.
        credits = settings.amount if attempt.claimed_credits is None else attempt.claimed_credits
        price = price_of(credits, settings.currency)
        terms = ChargeTerms(
            credits, price.currency, price.amount_minor, user.encrypted_payment_method_id
        )
        until = self.clock.now() + self.config.attempt_lease_seconds
        return self.store.start_charge(user.user_id, seq, lease, terms, until)

    def _charge_request(self, user: UserRecord, seq: int, terms: ChargeTerms) -> ChargeRequest:
        assert user.encrypted_stripe_customer_id is not None
        metadata = {
            "user_id": user.user_id,
            "credits": str(terms.credits),
            "attempt": str(seq),
            "purpose": TOPUP_PURPOSE,
        }
        return ChargeRequest(
            self._open(user, F_CUSTOMER, user.encrypted_stripe_customer_id),
            self._open(user, F_PAYMENT_METHOD, terms.encrypted_payment_method_id),
            Money(terms.amount_minor, terms.currency),
            idempotency_key(user.user_id, seq),
            metadata,
        )

    def _retry_later(self, user: UserRecord, seq: int, lease: int, tries: int, sent: bool) -> None:
        """After a transient error: try again after a back-off, holding the lease across it; out
        of tries, end the attempt as ``failed`` when nothing was sent, else leave it ``unknown``
        (open, nobody told) for the webhook or a recovery to settle."""
        now = self.clock.now()
        key = idempotency_key(user.user_id, seq)
        if tries < self.config.charge_tries:
            delay = self.config.retry_delay(key, tries)
            until = now + delay + self.config.attempt_lease_seconds
            status = "charging" if sent else None
            if self.store.hold_lease(user.user_id, seq, lease, until, status, tries):
                self.tasks.submit(partial(self._run_topup, user.user_id, seq, lease, tries), delay)
            return
        if not sent:
            # The provider stayed unreachable before anything was charged: not the card's fault.
            self._finish(user, seq, lease, replace(_unchanged(user, "failed"), retries=tries - 1))
            return
        until = now + self.config.attempt_lease_seconds
        if self.store.hold_lease(user.user_id, seq, lease, until, "unknown", tries - 1):
            self.metrics.unknown_outcome()
            log_event(log, logging.WARNING, "topup_unknown", user=user.user_id, attempt=seq)

    def _record_result(
        self, user: UserRecord, seq: int, lease: int, result: ChargeResult, tries: int
    ) -> None:
        """Apply the charge's answer to attempt ``seq``: credit, or count and report the failure.

        The open attempt is always the user's newest, so its failure may change the user's state.
        """
        self._observe_charge(user.user_id, seq, result)
        if isinstance(result, ChargeSucceeded):
            self.settle_payment(
                user.user_id, result.payment_intent_id, result.price, result.metadata,
                retries=tries,
            )  # fmt: skip
            return
        failures = user.consecutive_failures + 1
        suspended = failures >= self.config.failures_before_suspension
        if isinstance(result, ChargeNeedsAuthentication):
            # The bank wants the customer present: pause until they act, whatever the count.
            status, code, state = "requires_action", None, SUSPENDED if suspended else PAUSED
        else:
            status, code = "declined", result.decline_code or result.code
            state = SUSPENDED if suspended else user.state
        # The charge's terms are the attempt's own since it started charging: the store keeps them.
        outcome = AttemptOutcome(
            status, payment_intent_id=result.payment_intent_id, decline_code=code, retries=tries,
            state=state, consecutive_failures=failures,
        )  # fmt: skip
        extra = []
        if suspended:
            extra.append(outbox_notice(user.user_id, "topup_suspended", str(seq),
                                 {"failures": str(failures)}))  # fmt: skip
        self._finish(user, seq, lease, outcome, extra)

    def _observe_charge(self, user_id: str, seq: int, result: ChargeResult) -> None:
        """Count and log the gateway's answer (``topup_charge_<outcome>``)."""
        code = None
        if isinstance(result, ChargeSucceeded):
            outcome = "succeeded"
        elif isinstance(result, ChargeDeclined):
            outcome, code = "declined", result.decline_code or result.code
        else:
            outcome = "requires_action"
        self.metrics.charge(outcome, code)
        log_event(log, logging.INFO, f"topup_charge_{outcome}", user=user_id, attempt=seq,
                  decline_code=code, payment_intent=result.payment_intent_id)  # fmt: skip

    def _finish(
        self,
        user: UserRecord,
        seq: int,
        lease: int | None,
        outcome: AttemptOutcome,
        extra: list[PendingNotice] | None = None,
    ) -> None:
        """Record the attempt's end with its one final notice in the outbox (one transaction),
        write the cache, then send the notice.

        Nothing changes when the attempt had already ended or the lease was lost.
        """
        notices = []
        kind = FINAL_NOTICES[outcome.status]
        if kind is not None:
            detail = {"attempt": str(seq), "status": outcome.status}
            if outcome.decline_code:
                detail["decline_code"] = outcome.decline_code
            notices.append(outbox_notice(user.user_id, kind, str(seq), detail))
        notices += extra or []
        snapshot = self.store.finish_attempt(
            user.user_id, seq, lease, outcome, self.clock.now(), notices
        )
        if snapshot is None:
            return
        self._publish(user.user_id, snapshot)
        self.metrics.attempt_finished(outcome.status)
        log_event(log, logging.INFO, "topup_finished", user=user.user_id, attempt=seq,
                  status=outcome.status, decline_code=outcome.decline_code)  # fmt: skip
        if outcome.state == SUSPENDED and user.state != SUSPENDED:
            self.metrics.suspension()
            log_event(log, logging.WARNING, "topup_suspended", user=user.user_id, attempt=seq,
                      failures=outcome.consecutive_failures)  # fmt: skip
        self._send(notices)

    def _send(self, notices: list[PendingNotice]) -> None:
        """Send outbox notices and mark each sent (a death in between re-sends it later, under
        the same ``notice_id``)."""
        for notice in notices:
            self.notifier.notify(
                Notification(notice.user_id, notice.kind, self.clock.now(), notice.detail,
                             notice.notice_id)
            )  # fmt: skip
            self.store.mark_notice_sent(notice.notice_id, self.clock.now())

    def send_pending_notices(self, user_id: str) -> int:
        """Send the user's outbox notices that a dead worker left unsent; how many."""
        pending = self.store.pending_notices(user_id)
        self._send(pending)
        return len(pending)

    # ----------------------------------------------------------------- recovery

    def recover(self, user_id: str, *, force: bool = False) -> int | None:
        """Take over the user's open attempt if its lease ran out (or at once, with ``force``)
        and run it again under its idempotency key; the attempt's number, or ``None``."""
        seq = self.store.get_user(user_id).open_attempt
        if seq is None:
            return None
        now = self.clock.now()
        until = now + self.config.attempt_lease_seconds
        lease = self.store.take_over(user_id, seq, now, until, force)
        if lease is None:
            return None
        self.tasks.submit(partial(self._run_topup, user_id, seq, lease))
        return seq


def _unchanged(user: UserRecord, status: str) -> AttemptOutcome:
    """An attempt outcome that leaves the user's state and failure count as they are."""
    return AttemptOutcome(status, state=user.state, consecutive_failures=user.consecutive_failures)
