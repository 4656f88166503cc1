"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchasing, exponential lifetime.

The likelihood, P(alive) and the conditional expectation follow Fader & Hardie (2005), "A note
on deriving the Pareto/NBD model and related expressions" (likelihood: equations 18-19).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from training.repurchase.btyd import BtydModel, check_summary


def paretonbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, tx: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """Per-customer Pareto/NBD log-likelihood (Fader & Hardie 2005 note, equations 18-19)."""
    r, alpha, s, beta = params
    rsx = r + s + x
    if alpha >= beta:  # 2F1(r+s+x, s+1; r+s+x+1; (alpha-beta)/(alpha+t))
        big, second, diff = alpha, s + 1.0, alpha - beta
    else:  # 2F1(r+s+x, r+x; r+s+x+1; (beta-alpha)/(beta+t))
        big, second, diff = beta, r + x, beta - alpha
    l1 = np.log(special.hyp2f1(rsx, second, rsx + 1.0, diff / (big + tx))) - rsx * np.log(big + tx)
    l2 = np.log(special.hyp2f1(rsx, second, rsx + 1.0, diff / (big + big_t))) - rsx * np.log(big + big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a0 = l1 + np.log1p(-np.exp(np.minimum(l2 - l1, 0.0)))
    log_a0 = np.where(l2 >= l1, -np.inf, log_a0)
    first = -(r + x) * np.log(alpha + big_t) - s * np.log(beta + big_t)
    second_term = np.log(s) - np.log(rsx) + log_a0
    return (
        special.gammaln(r + x)
        - special.gammaln(r)
        + r * np.log(alpha)
        + s * np.log(beta)
        + np.logaddexp(first, second_term)
    )


@dataclass
class ParetoNbdModel(BtydModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchasing, exponential lifetime."""

    PARAM_NAMES: tuple[str, ...] = ("r", "alpha", "s", "beta")
    INITIAL: tuple[float, ...] = (0.5, 10.0, 0.6, 10.0)
    UPPER: tuple[float, ...] = (100.0, 1e4, 10.0, 1e4)  # s = 10: drop-out rates vary by 1/sqrt(10)

    def _ll(self, params: np.ndarray, x: np.ndarray, tx: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        return paretonbd_log_likelihood(params, x, tx, big_t)

    def p_alive_summary(self, summary: pd.DataFrame) -> np.ndarray:
        p = self.params
        r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
        x, tx, big_t = check_summary(summary)
        ll = paretonbd_log_likelihood(np.array([r, alpha, s, beta]), x, tx, big_t)
        log_alive_part = (
            special.gammaln(r + x)
            - special.gammaln(r)
            + r * np.log(alpha)
            + s * np.log(beta)
            - (r + x) * np.log(alpha + big_t)
            - s * np.log(beta + big_t)
        )
        return np.exp(np.minimum(log_alive_part - ll, 0.0))

    def expected_purchases_summary(self, summary: pd.DataFrame, *, horizon_days: float) -> pd.Series:
        """P(alive) * (r+x)(beta+T)/((alpha+T)(s-1)) * [1 - ((beta+T)/(beta+T+t))^(s-1)]."""
        p = self.params
        r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
        x, _, big_t = check_summary(summary)
        t = horizon_days / self.time_unit_days
        alive = self.p_alive_summary(summary)
        if abs(s - 1.0) < 1e-9:
            growth = (r + x) / (alpha + big_t) * (beta + big_t) * np.log((beta + big_t + t) / (beta + big_t))
        else:
            growth = (
                (r + x)
                * (beta + big_t)
                / ((alpha + big_t) * (s - 1.0))
                * (1.0 - ((beta + big_t) / (beta + big_t + t)) ** (s - 1.0))
            )
        return pd.Series(alive * growth, index=summary.index, name="expected_purchases", dtype="float64")
