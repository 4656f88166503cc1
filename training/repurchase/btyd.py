"""Buy-till-you-die models: the repeat-purchase summary they read and their shared fitter.

Both models (`training.repurchase.bgnbd.BgNbdModel`, `training.repurchase.paretonbd.ParetoNbdModel`)
read only the repeat-purchase summary of each customer before a cut-off:

``frequency`` (x)
    Repeat purchase days: distinct calendar days with a purchase, minus one.
``recency`` (t_x)
    Time from the first to the last purchase day.
``age`` (T)
    Time from the first purchase day to the cut-off.

Time is in `time_unit_days` units (7 = weeks, as in the published CDNOW figures). `BtydModel`
fits a subclass's likelihood by maximum likelihood with scipy (Nelder-Mead, then L-BFGS-B on
the log parameters).

Published estimates on the 2,357-customer CDNOW sample (39-week calibration from 1997-01-01):
BG/NBD r=0.243, alpha=4.414, a=0.793, b=2.426; Pareto/NBD r=0.553, alpha=10.578, s=0.606,
beta=11.669 (checked in ``tests/training/repurchase/test_bgnbd.py`` and ``test_paretonbd.py``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd
from scipy import optimize

from features.arrays import DAY_NS, event_code, event_type_codes, ts_ns
from features.errors import InvalidInputError, NotFittedError
from features.schema import EVENT_TYPE, TS, USER_ID, EventType
from features.window import check_as_of, history

logger = logging.getLogger(__name__)

FREQUENCY = "frequency"
RECENCY = "recency"
AGE = "age"
SUMMARY_COLUMNS: tuple[str, ...] = (FREQUENCY, RECENCY, AGE)


def build_rfm_summary(
    events: pd.DataFrame, *, as_of: pd.Timestamp, time_unit_days: float = 7.0
) -> pd.DataFrame:
    """Repeat-purchase summary (x, t_x, T) per customer with a purchase before `as_of`.

    Purchase days are calendar days (naive UTC). ``age`` runs to `as_of` minus one day, so a
    39-week calibration "1997-01-01 to 1997-09-30" is ``as_of=1997-10-01``.

    Returns
    -------
    pd.DataFrame
        Index ``user_id`` (sorted); columns ``frequency`` (int64), ``recency`` and ``age``
        (float64, in `time_unit_days` units).
    """
    as_of = check_as_of(as_of)
    hist = history(events, as_of)
    buys = hist.loc[event_type_codes(hist[EVENT_TYPE]) == event_code(EventType.PURCHASE)]
    days = pd.DataFrame({USER_ID: buys[USER_ID].to_numpy(), "day": ts_ns(buys[TS]) // DAY_NS})
    days = days.drop_duplicates()
    grouped = days.groupby(USER_ID, sort=True)["day"]
    first, last, n = grouped.min(), grouped.max(), grouped.size()
    end_day = as_of.value // DAY_NS - 1
    out = pd.DataFrame(
        {
            FREQUENCY: (n - 1).astype("int64"),
            RECENCY: ((last - first) / time_unit_days).astype("float64"),
            AGE: ((end_day - first) / time_unit_days).astype("float64"),
        }
    )
    out.index.name = USER_ID
    return out


def check_summary(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The summary's x, t_x and T as float64 arrays, after checking them.

    Raises
    ------
    InvalidInputError
        A column of `SUMMARY_COLUMNS` is missing, or a row (named) is not finite, has a negative
        frequency or recency, or a recency beyond its age.
    """
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise InvalidInputError(f"summary: missing columns {missing}, expected {list(SUMMARY_COLUMNS)}")
    x = summary[FREQUENCY].to_numpy(dtype="float64")
    tx = summary[RECENCY].to_numpy(dtype="float64")
    big_t = summary[AGE].to_numpy(dtype="float64")
    bad = ~np.isfinite(x) | ~np.isfinite(tx) | ~np.isfinite(big_t) | (x < 0) | (tx < 0) | (tx > big_t)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"summary: row {summary.index[i]!r} has frequency={x[i]}, recency={tx[i]}, age={big_t[i]}; "
            "expected 0 <= recency <= age and frequency >= 0"
        )
    return x, tx, big_t


@dataclass
class BtydModel:
    """Shared fitting code; subclasses define the likelihood and the expectation."""

    time_unit_days: float = 7.0
    params_: np.ndarray | None = None
    log_likelihood_: float | None = None

    PARAM_NAMES: tuple[str, ...] = ()
    INITIAL: tuple[float, ...] = ()
    UPPER: tuple[float, ...] = ()
    """Upper bounds of the parameters (lower bound 1e-4 for all): a short history does not identify
    the drop-out process, the shapes then run off towards infinity and every hyp2f1 call slows down."""

    def _ll(self, params: np.ndarray, x: np.ndarray, tx: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit_summary(self, summary: pd.DataFrame) -> Self:
        """Maximum-likelihood fit on a `build_rfm_summary` frame (time in `time_unit_days`)."""
        x, tx, big_t = check_summary(summary)
        if len(x) == 0:
            raise InvalidInputError(f"{type(self).__name__}: no customer to fit on")
        started = time.perf_counter()
        # customers with the same (x, t_x, T) have the same likelihood: evaluate each once, weighted
        rows, weight = np.unique(np.column_stack([x, tx, big_t]), axis=0, return_counts=True)
        ux, utx, ut = rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy()
        weight = weight.astype("float64")

        def objective(log_params: np.ndarray) -> float:
            ll = self._ll(np.exp(log_params), ux, utx, ut)
            total = float(np.sum(weight * ll))
            return -total if np.isfinite(total) else 1e300

        start = np.log(np.asarray(self.INITIAL, dtype="float64"))
        bounds = [(np.log(1e-4), np.log(upper)) for upper in self.UPPER]
        result = optimize.minimize(
            objective,
            start,
            method="Nelder-Mead",
            bounds=bounds,
            options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-8},
        )
        result = optimize.minimize(objective, result.x, method="L-BFGS-B", bounds=bounds)
        self.params_ = np.exp(result.x)
        self.log_likelihood_ = -float(result.fun)
        logger.info(
            "%s fit on %d customers (%d distinct histories): %s, log-likelihood %.2f, %.2fs",
            type(self).__name__,
            len(x),
            len(ux),
            ", ".join(f"{n}={v:.4f}" for n, v in zip(self.PARAM_NAMES, self.params_, strict=True)),
            self.log_likelihood_,
            time.perf_counter() - started,
        )
        return self

    def fit(self, events: pd.DataFrame, *, as_of: pd.Timestamp) -> Self:
        """Fit on the purchases before `as_of`."""
        return self.fit_summary(build_rfm_summary(events, as_of=as_of, time_unit_days=self.time_unit_days))

    @property
    def params(self) -> dict[str, float]:
        if self.params_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit first")
        return dict(zip(self.PARAM_NAMES, (float(v) for v in self.params_), strict=True))

    def expected_purchases_summary(self, summary: pd.DataFrame, *, horizon_days: float) -> pd.Series:
        raise NotImplementedError

    def expected_purchases(
        self, events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: float, user_ids: pd.Index
    ) -> pd.Series:
        """Expected purchase days in ``[as_of, as_of + horizon_days)`` per user (0 for non-buyers)."""
        summary = build_rfm_summary(events, as_of=as_of, time_unit_days=self.time_unit_days)
        expected = self.expected_purchases_summary(summary, horizon_days=horizon_days)
        return expected.reindex(pd.Index(user_ids, name=USER_ID), fill_value=0.0)

    def predict_proba(
        self, events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: float, user_ids: pd.Index
    ) -> pd.Series:
        """P(at least one purchase in the horizon), approximated as ``1 - exp(-E[Y])``.

        The ranking (and so ROC-AUC) is that of the conditional expectation.
        """
        expected = self.expected_purchases(events, as_of=as_of, horizon_days=horizon_days, user_ids=user_ids)
        return 1.0 - np.exp(-expected)
