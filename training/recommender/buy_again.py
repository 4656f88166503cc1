"""Buy again: how likely a user re-buys an item they bought before, within the horizon.

`BuyAgainScorer` is the swappable interface (the repurchase model can plug in here); the default
`CycleBuyAgainScorer` reads the user's own rhythm for the item, the user x category rhythm and
the store-wide category cycle (`features.build_stats` / `features.build_category`).
`score_buy_again` is what the candidate step calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.special import ndtr

from training.recommender.config import BuyAgainConfig


@dataclass(frozen=True)
class BuyAgainInputs:
    """Aligned arrays (any shape, the same for all) describing (user, item) pairs.

    ``purchase_days``: distinct days the user bought the item (0: never); ``days_since``: days
    since the last purchase (NaN if never); ``own_gap``: the user's median gap between purchase
    days of the item (NaN below 2 days); ``category_gap``: the same for the item's category;
    ``category_cycle``: the store-wide cycle of the category (NaN if unknown); ``repeat_rate``:
    share of the item's buyers who bought it on two or more days.
    """

    purchase_days: np.ndarray
    days_since: np.ndarray
    own_gap: np.ndarray
    category_gap: np.ndarray
    category_cycle: np.ndarray
    repeat_rate: np.ndarray


class BuyAgainScorer(Protocol):
    """Scores how likely a user re-buys an item within the horizon; 0 for items never bought."""

    def score(self, inputs: BuyAgainInputs) -> np.ndarray:
        """Score per pair, the shape of the inputs."""
        ...


@dataclass(frozen=True)
class CycleBuyAgainScorer:
    """Repeat propensity x P(next purchase within ``due_within_days`` | not yet) x still-alive.

    The expected cycle is the user's own gap for the item, else their gap in the category, else
    the category's store-wide cycle; the next purchase is lognormal around it (``sigma``).
    """

    config: BuyAgainConfig = field(default_factory=BuyAgainConfig)

    def expected_cycle(self, inputs: BuyAgainInputs) -> np.ndarray:
        """Days between purchases: own gap, else category gap, else category cycle (NaN if none)."""
        cycle = np.where(np.isfinite(inputs.own_gap), inputs.own_gap, inputs.category_gap)
        cycle = np.where(np.isfinite(cycle), cycle, inputs.category_cycle)
        return np.where(np.isfinite(cycle) & (cycle > 0), cycle, np.nan)

    def score(self, inputs: BuyAgainInputs) -> np.ndarray:
        """Score in [0, 1] of every pair; 0 for items never bought."""
        cfg = self.config
        bought = inputs.purchase_days > 0
        cycle = self.expected_cycle(inputs)
        cycle = np.where(np.isfinite(cycle), cycle, 60.0)
        ds = np.where(bought, np.maximum(np.nan_to_num(inputs.days_since, nan=0.0), 0.01), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_c = np.log(cycle)
            f_now = ndtr((np.log(ds) - log_c) / cfg.sigma)
            f_end = ndtr((np.log(ds + cfg.due_within_days) - log_c) / cfg.sigma)
            window = (f_end - f_now) / np.maximum(1.0 - f_now, 1e-3)
        n = inputs.purchase_days.astype(np.float64)
        rate = np.nan_to_num(inputs.repeat_rate, nan=0.0)
        propensity = (np.maximum(n - 1.0, 0.0) + 2.0 * rate) / (n + 1.0)
        alive = np.exp(-cfg.overdue_decay * np.maximum(ds / cycle - 2.0, 0.0))
        return np.where(bought, propensity * np.clip(window, 0.0, 1.0) * alive, 0.0)

    def is_due(self, inputs: BuyAgainInputs) -> np.ndarray:
        """The next purchase is expected before ``due_within_days`` from now."""
        cycle = self.expected_cycle(inputs)
        with np.errstate(invalid="ignore"):
            return np.isfinite(cycle) & (inputs.days_since + self.config.due_within_days >= cycle)


def score_buy_again(
    scorer: BuyAgainScorer, inputs: BuyAgainInputs, *, bought: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Score and due flag of every (user, item) of a batch.

    Parameters
    ----------
    scorer
        Any `BuyAgainScorer`; one without ``is_due`` counts every item as due.
    inputs
        Arrays that broadcast to the shape of `bought`.
    bought
        bool users x items: the user bought the item before.

    Returns
    -------
    score, due
        float64 and bool arrays of the shape of `bought`.
    """
    n_b, n_i = bought.shape
    if type(scorer) is CycleBuyAgainScorer:
        # it scores 0 for items never bought and `due` only matters for bought items: score those
        at_bought = np.flatnonzero(bought.ravel())
        subset = BuyAgainInputs(
            **{
                name: np.ascontiguousarray(
                    np.broadcast_to(getattr(inputs, name), (n_b, n_i)).ravel()[at_bought]
                )
                for name in BuyAgainInputs.__dataclass_fields__
            }
        )
        buy_again = np.zeros((n_b, n_i))
        buy_again.ravel()[at_bought] = scorer.score(subset)
        due = np.zeros((n_b, n_i), dtype=bool)
        due.ravel()[at_bought] = scorer.is_due(subset)
    else:
        buy_again = np.asarray(scorer.score(inputs), dtype=np.float64)
        due = scorer.is_due(inputs) if hasattr(scorer, "is_due") else np.ones((n_b, n_i), dtype=bool)
    return buy_again, due
