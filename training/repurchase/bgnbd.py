"""BG/NBD (Fader, Hardie & Lee 2005): Poisson purchasing, geometric drop-out after purchases.

Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2): the likelihood is equation 6, the conditional
expectation equation 10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from training.repurchase.btyd import BtydModel, check_summary


def bgnbd_log_likelihood(params: np.ndarray, x: np.ndarray, tx: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, equation 6)."""
    r, alpha, a, b = params
    base = (
        special.gammaln(r + x)
        - special.gammaln(r)
        + r * np.log(alpha)
        + special.betaln(a, b + x)
        - special.betaln(a, b)
        - (r + x) * np.log(alpha + big_t)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        extra = np.where(
            x > 0,
            np.log(a)
            - np.log(np.maximum(b + x - 1, 1e-300))
            + (r + x) * (np.log(alpha + big_t) - np.log(alpha + tx)),
            -np.inf,
        )
    return base + np.logaddexp(0.0, extra)


@dataclass
class BgNbdModel(BtydModel):
    """BG/NBD (Fader, Hardie & Lee 2005): Poisson purchasing, geometric drop-out after purchases."""

    PARAM_NAMES: tuple[str, ...] = ("r", "alpha", "a", "b")
    INITIAL: tuple[float, ...] = (0.5, 5.0, 0.8, 2.5)
    UPPER: tuple[float, ...] = (100.0, 1e4, 100.0, 1e4)

    def _ll(self, params: np.ndarray, x: np.ndarray, tx: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        return bgnbd_log_likelihood(params, x, tx, big_t)

    def expected_purchases_summary(self, summary: pd.DataFrame, *, horizon_days: float) -> pd.Series:
        """E[Y(t) | x, t_x, T] (equation 10) for t = `horizon_days`; indexed like `summary`."""
        p = self.params
        r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
        x, tx, big_t = check_summary(summary)
        t = horizon_days / self.time_unit_days
        z = t / (alpha + big_t + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1.0, z)
        num = (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp)
        den = 1.0 + np.where(
            x > 0, a / np.maximum(b + x - 1.0, 1e-12) * ((alpha + big_t) / (alpha + tx)) ** (r + x), 0.0
        )
        return pd.Series(num / den, index=summary.index, name="expected_purchases", dtype="float64")
