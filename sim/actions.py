"""What users do in a run besides sending requests: the timed actions a scenario schedules, and
their reactions when auto top-up stops for them.

Timed actions (``[[actions]]``, :class:`Action`) happen to the users of a group, or of every group,
at a time or after a delay drawn per user: a card expires (each charge then declines
``expired_card``), a card starts declining at random (a per-charge law, as ``declines``), the user
saves a new card, or the user changes their auto top-up settings. ``share`` picks that fraction of
the users at random.

Reactions (``[groups.<name>.reactions]``, :class:`~sim.scenario.Reactions`): after a notice that
stops their top-ups (paused for 3-D Secure or a missing card, or suspended after declines), a
user saves a working card after a delay, with a chance.

:class:`Behaviour` runs both inside a world: it knows each user's Stripe customer and current card
and calls the billing module's own entry points (``save_payment_method``, ``update_settings``),
as the product's settings page would. Each outcome is an event row: ``action`` (``outcome`` the
action), ``action_failed`` when the billing refused it (enabling without a usable card), and
``card_saved`` / ``card_save_failed`` for reactions. Nothing is scheduled at or after the end of
the traffic. Randomness comes from two streams of the world's seed, drawn only when a scenario
has actions or reactions, so other scenarios keep their events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.billing import (
    CURRENCIES,
    THRESHOLDS,
    TIER_CREDITS,
    BillingError,
    BillingService,
    Store,
)
from sim.billing.payments import StripeGateway
from sim.gateways import TEST_CARDS
from sim.stripe_emulator import StripeEmulator

from .eventlog import EventLog
from .tables import Distribution, ScenarioError, Table, read_declines, read_distribution

if TYPE_CHECKING:
    from .scenario import Reactions

#: What a timed action does (``do``).
ACTIONS = ("card_expires", "card_declines", "replace_card", "settings")
#: Notices after which auto top-up stops for the user until they save a card.
STOPPED_KINDS = frozenset(
    {"topup_action_required", "topup_payment_method_missing", "topup_suspended"}
)
#: Settings an action may change, and what each allows (the scenario's own lists).
_SETTING_RULES: dict[str, tuple[type, tuple[Any, ...] | None]] = {
    "enabled": (bool, None),
    "threshold": (int, tuple(THRESHOLDS)),
    "amount": (int, tuple(TIER_CREDITS)),
    "currency": (str, tuple(CURRENCIES)),
}


@dataclass(frozen=True, slots=True)
class Action:
    """One timed action of a scenario: ``do`` at ``at_hours`` (drawn per user) to a ``share`` of
    the users of ``group`` (``None``: every group)."""

    do: str
    at_hours: Distribution
    group: str | None = None
    share: float = 1.0
    #: ``replace_card``: the test card saved.
    card: str = "pm_card_visa"
    #: ``card_declines``: the per-charge law from then on (decline code, chance).
    declines: tuple[tuple[str, float], ...] = ()
    #: ``settings``: the settings changed, by name (the others are kept).
    settings: tuple[tuple[str, Any], ...] = ()


def read_actions(t: Table, groups: Sequence[str]) -> tuple[Action, ...]:
    """The ``[[actions]]`` array of a scenario (``t`` is the top-level table)."""
    t.read.append("actions")
    raw = t.data.get("actions", [])
    if not isinstance(raw, list):
        raise t.error("actions", "must be an array of tables ([[actions]])")
    return tuple(
        _action(Table(item, f"actions[{i}]", t.source), groups) for i, item in enumerate(raw)
    )


def _action(t: Table, groups: Sequence[str]) -> Action:
    do = t.take("do", str, allowed=ACTIONS)
    t.read.append("at_hours")
    at = t.data.get("at_hours")
    if isinstance(at, Mapping):
        at_hours = read_distribution(t.table("at_hours"))
    else:
        at_hours = Distribution("fixed", value=t.take("at_hours", float, low=0))
    group = t.take("group", str, None, allowed=tuple(groups))
    share = t.take("share", float, 1.0, low=0, high=1)
    extra: dict[str, Any] = {}
    if do == "replace_card":
        extra["card"] = t.take("card", str, "pm_card_visa", allowed=tuple(TEST_CARDS))
    elif do == "card_declines":
        if not t.has("declines"):
            raise t.error("declines", "is required for do = 'card_declines'")
        extra["declines"] = read_declines(t.table("declines"))
    elif do == "settings":
        extra["settings"] = _settings_change(t.table("auto_topup"))
    t.done()
    return Action(do, at_hours, group, share, **extra)


def _settings_change(t: Table) -> tuple[tuple[str, Any], ...]:
    """The settings an action changes, each checked against what a scenario allows."""
    for name in t.data:
        if name not in _SETTING_RULES:
            raise t.error(name, f"unknown key; allowed here: {', '.join(_SETTING_RULES)}")
    if not t.data:
        raise ScenarioError(t.source, t.key, "needs at least one setting to change")
    change = tuple(
        (name, t.take(name, kind, allowed=allowed))
        for name, (kind, allowed) in _SETTING_RULES.items()
        if t.has(name)
    )
    t.done()
    return change


#: ``blocked`` for a user who left: later than any run.
_FOREVER = 2**62


@dataclass(slots=True)
class _Streak:
    """A user's refusals in a row: since when, how many, and how long they will wait."""

    start: int
    patience: float
    refusals: int = 0


@dataclass(slots=True)
class _Card:
    """A user's Stripe customer and the card PaymentMethod saved now."""

    customer: str
    payment_method: str


class Behaviour:
    """The timed actions and reactions of one world's users (see the module docstring)."""

    def __init__(
        self,
        env: simpy.Environment,
        ticks_per_hour: float,
        horizon_ticks: int,
        billing: BillingService,
        store: Store,
        stripe: StripeGateway,
        emulator: StripeEmulator,
        events: EventLog,
        seeds: tuple[np.random.SeedSequence, np.random.SeedSequence],
    ) -> None:
        self._env, self._per_hour, self._horizon = env, ticks_per_hour, horizon_ticks
        self._billing, self._store, self._stripe, self._emulator = billing, store, stripe, emulator
        self._events = events
        self._reaction_rng = np.random.default_rng(seeds[0])
        self._action_rng = np.random.default_rng(seeds[1])
        self._cards: dict[str, _Card] = {}
        self._reactions: dict[str, Reactions] = {}
        self._fixing: set[str] = set()
        #: Users who send nothing until a tick: gave up for the day, or left for good.
        self.blocked: dict[str, int] = {}
        self._streaks: dict[str, _Streak] = {}
        self._request: Callable[[int, str, int, int], None] | None = None

    def add_user(
        self, user_id: str, customer: str, payment_method: str, reactions: Reactions
    ) -> None:
        """Remember a user's customer and card, and how they react (if they do)."""
        self._cards[user_id] = _Card(customer, payment_method)
        if reactions.fix_card_rate or reactions.on_refusal:
            self._reactions[user_id] = reactions

    def bind(self, request: Callable[[int, str, int, int], None]) -> None:
        """How to send a request again: ``request(tick, user, cost, tries)``, the world's own."""
        self._request = request

    # ------------------------------------------------------------------ refused requests

    def refused(self, tick: int, user_id: str, cost: int, tries: int) -> None:
        """A request of ``user_id`` was refused: they may leave for good (churn), give up for
        the day, or send it again later, in that order of precedence."""
        reactions = self._reactions.get(user_id)
        if reactions is None or not reactions.on_refusal:
            return
        rng = self._reaction_rng
        streak = self._streaks.get(user_id)
        if streak is None:
            patience = math.inf
            if reactions.churn_per_dry_hour:
                # Leaving at a constant chance p per dry hour: an exponential patience of mean
                # 1 / -ln(1 - p) hours, drawn afresh per streak (memoryless, so that is exact).
                hazard = -math.log1p(-reactions.churn_per_dry_hour)
                patience = float(rng.exponential(1 / hazard)) * self._per_hour
            streak = self._streaks[user_id] = _Streak(tick, patience)
        streak.refusals += 1
        if tick - streak.start >= streak.patience:
            del self._streaks[user_id]
            self.blocked[user_id] = _FOREVER
            self._events.add("churned", user_id)
            return
        if reactions.give_up_after and streak.refusals >= reactions.give_up_after:
            del self._streaks[user_id]
            day = 24 * self._per_hour
            self.blocked[user_id] = round((tick // day + 1) * day)
            self._events.add("gave_up", user_id)
            return
        if tries < reactions.retries:
            seconds = float(reactions.retry_after_seconds.sample(rng, 1)[0])
            at = tick + round(seconds * self._per_hour / 3_600)
            if at < self._horizon:
                self._env.process(self._retry(at, user_id, cost, tries + 1))

    def served(self, user_id: str) -> None:
        """A request of ``user_id`` was served: their streak of refusals is over."""
        self._streaks.pop(user_id, None)

    def _retry(self, at: int, user_id: str, cost: int, tries: int) -> Generator[simpy.Event]:
        yield self._env.timeout(at - self._env.now)
        if self.blocked.get(user_id, -1) > at:
            return
        assert self._request is not None, "Behaviour.bind was not called"
        self._request(at, user_id, cost, tries)

    # ------------------------------------------------------------------ timed actions

    def schedule(self, actions: Sequence[Action], users: Sequence[tuple[str, str]]) -> None:
        """Schedule every action for its users (``users``: (user id, group) in creation order)."""
        rng = self._action_rng
        for action in actions:
            for user_id, group in users:
                if action.group is not None and group != action.group:
                    continue
                if action.share < 1.0 and rng.random() >= action.share:
                    continue
                hours = float(action.at_hours.sample(rng, 1)[0])
                tick = round(hours * self._per_hour)
                if tick < self._horizon:
                    self._env.process(self._act(action, user_id, tick))

    def _act(self, action: Action, user_id: str, tick: int) -> Generator[simpy.Event]:
        yield self._env.timeout(tick - self._env.now)
        self._logged(("action", "action_failed"), user_id, action.do,
                     lambda: self._do(action, user_id))  # fmt: skip

    def _do(self, action: Action, user_id: str) -> None:
        card = self._cards[user_id]
        if action.do == "card_expires":
            self._emulator.set_decline_law(card.payment_method, {"expired_card": 1.0})
        elif action.do == "card_declines":
            self._emulator.set_decline_law(card.payment_method, dict(action.declines))
        elif action.do == "replace_card":
            self._save_card(user_id, action.card)
        else:
            settings = self._store.get_user(user_id).settings
            self._billing.update_settings(user_id, replace(settings, **dict(action.settings)))

    def _logged(
        self, kinds: tuple[str, str], user_id: str, outcome: str, do: Callable[[], None]
    ) -> None:
        """Do what a user does through the product and log it as ``kinds[0]``, or as
        ``kinds[1]`` when the billing refused it (the user saw an error page and does not try
        again)."""
        done, failed = kinds
        try:
            do()
        except BillingError:
            self._events.add(failed, user_id, outcome=outcome)
            return
        self._events.add(done, user_id, outcome=outcome)

    def _save_card(self, user_id: str, card_name: str) -> None:
        card = self._cards[user_id]
        payment_method = self._stripe.attach_card(card.customer, card_name)
        self._billing.save_payment_method(user_id, card.customer, payment_method)
        card.payment_method = payment_method

    # ------------------------------------------------------------------ reactions

    def react(self, kind: str, user_id: str) -> None:
        """After a notice that stops a user's top-ups, maybe schedule them saving a working card
        (their group's ``Reactions``); at most one pending fix per user, none past the traffic."""
        reactions = self._reactions.get(user_id)
        if reactions is None or not reactions.fix_card_rate:
            return
        if kind not in STOPPED_KINDS or user_id in self._fixing:
            return
        rng = self._reaction_rng
        if rng.random() >= reactions.fix_card_rate:
            return
        hours = float(reactions.fix_card_after_hours.sample(rng, 1)[0])
        delay = round(hours * self._per_hour)
        if self._env.now + delay >= self._horizon:
            return
        self._fixing.add(user_id)
        self._env.process(self._fix_card(user_id, reactions.fix_card, delay))

    def _fix_card(self, user_id: str, card_name: str, delay: int) -> Generator[simpy.Event]:
        yield self._env.timeout(delay)
        self._fixing.discard(user_id)
        self._logged(("card_saved", "card_save_failed"), user_id, card_name,
                     lambda: self._save_card(user_id, card_name))  # fmt: skip
