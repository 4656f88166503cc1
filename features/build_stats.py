"""Store-wide statistics computed first (`StoreStats`) and the settings of the builders (`FeatureConfig`).

Every builder in ``features/build_*.py`` works "as of" a cut-off: only events with
``ts < as_of`` are read, and nothing at or after ``as_of`` may influence a feature. Windows are
half-open ``[as_of - w days, as_of)``. Durations are float days (86,400 s); "purchase days" are
calendar days (naive UTC dates) with at least one purchase.

`calc_store_stats` condenses the whole history into a small, JSON-serialisable `StoreStats`
(per-category purchase cycles, membership-tier thresholds, whether the store logs logins). The
per-user builders read nothing store-wide except these statistics and the (small) items table,
which is what lets them run per partition of users (see `features.build_user`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.arrays import (
    DAY_NS,
    category_codes,
    day_gaps,
    event_code,
    event_type_codes,
    purchase_cents,
    ts_ns,
)
from features.errors import InvalidInputError
from features.schema import (
    EVENT_TYPE,
    ITEM_ID,
    TS,
    USER_ID,
    EventType,
    Tier,
)
from features.window import check_as_of

logger = logging.getLogger(__name__)


class FeatureConfig(BaseModel):
    """Settings of the point-in-time feature builders; the defaults suit the sample store.

    Attributes
    ----------
    new_user_days
        A user who signed up in ``[as_of - new_user_days, as_of)`` is in segment ``new``.
    lapsed_days
        A user with no login in ``[as_of - lapsed_days, as_of)`` is ``lapsed``.
    active_min_logins
        At least this many logins in the last 30 days make a user ``active``.
    silent_max_logins
        At most this many logins in the last 30 days make a user ``silent_warning``.
    tier_quantiles
        Quantiles of the positive 90-day spend of all users that open the bronze, silver and gold
        tiers (0.0 = any positive spend is bronze).
    min_cycle_gaps
        A category needs at least this many inter-purchase gaps (over all users) for its own
        cycle; otherwise it gets the store-wide cycle pooled over all categories.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    new_user_days: int = Field(default=7, ge=1)
    lapsed_days: int = Field(default=60, ge=1)
    active_min_logins: int = Field(default=5, ge=1)
    silent_max_logins: int = Field(default=2, ge=0)
    tier_quantiles: tuple[float, float, float] = (0.0, 0.6, 0.9)
    min_cycle_gaps: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _check(self) -> FeatureConfig:
        q = self.tier_quantiles
        if not (0.0 <= q[0] < q[1] < q[2] < 1.0):
            raise ValueError(f"tier_quantiles must be increasing within [0, 1), got {q}")
        if self.silent_max_logins >= self.active_min_logins:
            raise ValueError(
                f"silent_max_logins ({self.silent_max_logins}) must be below "
                f"active_min_logins ({self.active_min_logins})"
            )
        return self


@dataclass(frozen=True)
class StoreStats:
    """Small store-wide statistics as of a cut-off, shared by every partition of users.

    Attributes
    ----------
    as_of
        The cut-off (naive UTC); only events with ``ts < as_of`` were read.
    category_cycle_days
        Category -> median gap in days between a user's consecutive purchase days in that
        category, pooled over all users; only categories with at least ``min_cycle_gaps`` gaps.
    overall_cycle_days
        The same median pooled over all categories (the fallback cycle); None without any gap.
    tier_thresholds
        Tier value (``bronze``, ``silver``, ``gold``) -> minimum 90-day spend; empty when nobody
        spent anything in the last 90 days (then every user is tier ``none``).
    has_logins
        Whether any login event happened before ``as_of``. Without logins (real logs such as
        CDNOW) the login-based features count active days instead (see `features.build_user`).
    n_events, n_purchases
        Events and purchase events before ``as_of``.
    """

    as_of: pd.Timestamp
    category_cycle_days: Mapping[str, float] = field(default_factory=dict)
    overall_cycle_days: float | None = None
    tier_thresholds: Mapping[str, float] = field(default_factory=dict)
    has_logins: bool = True
    n_events: int = 0
    n_purchases: int = 0

    def cycle_days(self, category: str) -> float:
        """Cycle of `category` in days, falling back to the overall cycle, else NaN."""
        if category in self.category_cycle_days:
            return float(self.category_cycle_days[category])
        return math.nan if self.overall_cycle_days is None else float(self.overall_cycle_days)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (``as_of`` as an ISO string); inverse of `from_dict`."""
        return {
            "as_of": self.as_of.isoformat(),
            "category_cycle_days": {str(k): float(v) for k, v in sorted(self.category_cycle_days.items())},
            "overall_cycle_days": self.overall_cycle_days,
            "tier_thresholds": {str(k): float(v) for k, v in self.tier_thresholds.items()},
            "has_logins": self.has_logins,
            "n_events": self.n_events,
            "n_purchases": self.n_purchases,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreStats:
        """Rebuild from `to_dict` output (for example after ``json.loads``)."""
        return cls(
            as_of=pd.Timestamp(data["as_of"]),
            category_cycle_days=dict(data["category_cycle_days"]),
            overall_cycle_days=data["overall_cycle_days"],
            tier_thresholds=dict(data["tier_thresholds"]),
            has_logins=bool(data["has_logins"]),
            n_events=int(data["n_events"]),
            n_purchases=int(data["n_purchases"]),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StoreStats:
        return cls.from_dict(json.loads(text))


def check_stats(stats: StoreStats, as_of: pd.Timestamp) -> None:
    """Stats from another cut-off would leak (or miss) history: insist on the same ``as_of``."""
    if stats.as_of != as_of:
        raise InvalidInputError(
            f"stats: computed as of {stats.as_of}, but features are built as of {as_of}; "
            "compute StoreStats with calc_store_stats at the same as_of"
        )


# --- the statistics -----------------------------------------------------------------------------


def calc_store_stats(
    events: pd.DataFrame,
    items: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    config: FeatureConfig | None = None,
) -> StoreStats:
    """Store-wide statistics from the events before `as_of`.

    Parameters
    ----------
    events
        Validated events table (columns of `schema.EVENT_COLUMNS`, in-memory dtypes).
    items
        Validated items table; only ``item_id`` and ``category`` are read.
    as_of
        Cut-off (naive UTC); events with ``ts >= as_of`` are ignored.
    config
        Feature settings; `FeatureConfig()` when None.

    Returns
    -------
    StoreStats
        Category cycles (median gap between consecutive purchase days of a user in a category,
        pooled over users), tier thresholds (quantiles ``config.tier_quantiles`` of the positive
        spend in ``[as_of - 90 days, as_of)`` per user), whether any login was logged.

    Raises
    ------
    InvalidInputError
        `as_of` is not a naive timestamp, or item ids are not unique.
    """
    config = config or FeatureConfig()
    as_of = check_as_of(as_of)
    started = time.perf_counter()
    before = ts_ns(events[TS]) < as_of.value  # the history, without copying all of it
    types = event_type_codes(events[EVENT_TYPE])
    purchases = events.loc[before & (types == event_code(EventType.PURCHASE))]

    # category cycles
    user_codes, _ = pd.factorize(purchases[USER_ID])
    cat_codes, categories = category_codes(purchases[ITEM_ID], items)
    known = cat_codes >= 0
    days = ts_ns(purchases[TS])[known] // DAY_NS
    keys = user_codes[known].astype(np.int64) * max(len(categories), 1) + cat_codes[known]
    _, _, gap_keys, gaps = day_gaps(keys, days)
    gap_cats = gap_keys % max(len(categories), 1)
    cycles: dict[str, float] = {}
    if len(gaps):
        per_cat = pd.Series(gaps, dtype="float64").groupby(gap_cats)
        med, cnt = per_cat.median(), per_cat.size()
        for code in med.index[cnt.reindex(med.index).to_numpy() >= config.min_cycle_gaps]:
            cycles[str(categories[code])] = float(med[code])
    overall = float(np.median(gaps)) if len(gaps) else None

    # tier thresholds on 90-day spend
    in_90 = ts_ns(purchases[TS]) >= as_of.value - 90 * DAY_NS
    spend = pd.Series(purchase_cents(purchases.loc[in_90])).groupby(user_codes[in_90]).sum() / 100.0
    positive = spend[spend > 0].to_numpy()
    thresholds: dict[str, float] = {}
    if len(positive):
        qs = np.quantile(positive, config.tier_quantiles)
        thresholds = {
            Tier.BRONZE.value: float(qs[0]),
            Tier.SILVER.value: float(qs[1]),
            Tier.GOLD.value: float(qs[2]),
        }

    has_logins = bool((before & (types == event_code(EventType.LOGIN))).any())
    stats = StoreStats(
        as_of=as_of,
        category_cycle_days=cycles,
        overall_cycle_days=overall,
        tier_thresholds=thresholds,
        has_logins=has_logins,
        n_events=int(before.sum()),
        n_purchases=len(purchases),
    )
    logger.info(
        "store stats as of %s: %d of %d events before as_of, %d purchases, %d category cycles, "
        "logins=%s, %.2fs",
        as_of,
        int(before.sum()),
        len(events),
        len(purchases),
        len(cycles),
        has_logins,
        time.perf_counter() - started,
    )
    return stats


__all__ = ["FeatureConfig", "StoreStats", "calc_store_stats"]
