"""The billing module: prepaid credits with low-balance auto top-up.

Production code: it imports nothing from the simulation. Every dependency (clock, Redis client,
store, payment gateway, notifier, task runner, vault) is passed to :class:`BillingService`.
"""

from .cache import BalanceCache, RedisCache
from .claims import Trigger, idempotency_key
from .clock import Clock, ManualClock, SystemClock
from .errors import (
    BillingError,
    CacheUnavailable,
    CodeReplayed,
    DecryptionError,
    DuplicateUser,
    GatewayConfigurationError,
    GatewayRequestError,
    InsufficientCredits,
    InvalidAmount,
    InvalidCode,
    InvalidSettings,
    PaymentMethodMissing,
    PriceMismatch,
    StoreUnavailable,
    SubscriptionError,
    TooManyAttempts,
    TransientGatewayError,
    TwoFactorRequired,
    UnknownCurrency,
    UnknownTier,
    UnknownUser,
    WebhookPayloadError,
    WebhookSignatureError,
)
from .gateway import (
    ChargeDeclined,
    ChargeNeedsAuthentication,
    ChargeRequest,
    ChargeResult,
    ChargeSucceeded,
    PaymentGateway,
    SubscriptionGateway,
    SubscriptionInfo,
)
from .memory_cache import MemoryCache
from .memory_store import MemoryStore
from .notify import Notification, Notifier, RecordingNotifier
from .pricing import CURRENCIES, TIER_CREDITS, TIERS, Money, Tier, price_of, tier_for
from .service import BillingConfig, BillingService, Deduction
from .settings import ACTIVE, PAUSED, SUSPENDED, THRESHOLDS, AutoTopupSettings
from .sqlite_store import SQLiteStore
from .store import CachedUser, DeadLetter, Store, SubscriptionRecord
from .subscriptions import Subscriptions
from .tasks import InlineRunner, QueueRunner, TaskRunner, ThreadRunner
from .twofactor import Guess, TfaPolicy, TfaVerdict, TwoFactor
from .vault import Vault
from .webhooks import WebhookHandler

__all__ = [
    "ACTIVE",
    "CURRENCIES",
    "PAUSED",
    "SUSPENDED",
    "THRESHOLDS",
    "TIERS",
    "TIER_CREDITS",
    "AutoTopupSettings",
    "BalanceCache",
    "BillingConfig",
    "BillingError",
    "BillingService",
    "CacheUnavailable",
    "CachedUser",
    "ChargeDeclined",
    "ChargeNeedsAuthentication",
    "ChargeRequest",
    "ChargeResult",
    "ChargeSucceeded",
    "Clock",
    "CodeReplayed",
    "DeadLetter",
    "DecryptionError",
    "Deduction",
    "DuplicateUser",
    "GatewayConfigurationError",
    "GatewayRequestError",
    "Guess",
    "InlineRunner",
    "InsufficientCredits",
    "InvalidAmount",
    "InvalidCode",
    "InvalidSettings",
    "ManualClock",
    "MemoryCache",
    "MemoryStore",
    "Money",
    "Notification",
    "Notifier",
    "PaymentGateway",
    "PaymentMethodMissing",
    "PriceMismatch",
    "QueueRunner",
    "RecordingNotifier",
    "RedisCache",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "SubscriptionError",
    "SubscriptionGateway",
    "SubscriptionInfo",
    "SubscriptionRecord",
    "Subscriptions",
    "SystemClock",
    "TaskRunner",
    "TfaPolicy",
    "TfaVerdict",
    "ThreadRunner",
    "Tier",
    "TooManyAttempts",
    "TransientGatewayError",
    "Trigger",
    "TwoFactor",
    "TwoFactorRequired",
    "UnknownCurrency",
    "UnknownTier",
    "UnknownUser",
    "Vault",
    "WebhookHandler",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "idempotency_key",
    "price_of",
    "tier_for",
]
