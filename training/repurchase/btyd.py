"""Buy-till-you-die baselines: BG/NBD and Pareto/NBD, fitted by maximum likelihood with scipy.

Both models read only the repeat-purchase summary of each customer before a cut-off:

``frequency`` (x)
    Repeat purchase days: distinct calendar days with a purchase, minus one.
``recency`` (t_x)
    Time from the first to the last purchase day.
``age`` (T)
    Time from the first purchase day to the cut-off.

Time is in `time_unit_days` units (7 = weeks, as in the published CDNOW figures). The
likelihoods and conditional expectations follow

- Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
  Pareto/NBD model", Marketing Science 24(2) (BG/NBD, equations 6 and 10);
- Fader & Hardie (2005), "A note on deriving the Pareto/NBD model and related expressions"
  (Pareto/NBD likelihood, equations 18-19, P(alive) and conditional expectation).

Published estimates on the 2,357-customer CDNOW sample (39-week calibration from 1997-01-01):
BG/NBD r=0.243, alpha=4.414, a=0.793, b=2.426; Pareto/NBD r=0.553, alpha=10.578, s=0.606,
beta=11.669 (checked in ``tests/training/test_btyd.py``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd
from scipy import optimize, special

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


def _check_summary(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
class _BtydBase:
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
        x, tx, big_t = _check_summary(summary)
        if len(x) == 0:
            raise InvalidInputError(f"{type(self).__name__}: no customer to fit on")
        started = time.perf_counter()

        def objective(log_params: np.ndarray) -> float:
            ll = self._ll(np.exp(log_params), x, tx, big_t)
            total = float(np.sum(ll))
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
            "%s fit on %d customers: %s, log-likelihood %.2f, %.2fs",
            type(self).__name__,
            len(x),
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


@dataclass
class BgNbdModel(_BtydBase):
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
        x, tx, big_t = _check_summary(summary)
        t = horizon_days / self.time_unit_days
        z = t / (alpha + big_t + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1.0, z)
        num = (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp)
        den = 1.0 + np.where(
            x > 0, a / np.maximum(b + x - 1.0, 1e-12) * ((alpha + big_t) / (alpha + tx)) ** (r + x), 0.0
        )
        return pd.Series(num / den, index=summary.index, name="expected_purchases", dtype="float64")


@dataclass
class ParetoNbdModel(_BtydBase):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchasing, exponential lifetime."""

    PARAM_NAMES: tuple[str, ...] = ("r", "alpha", "s", "beta")
    INITIAL: tuple[float, ...] = (0.5, 10.0, 0.6, 10.0)
    UPPER: tuple[float, ...] = (100.0, 1e4, 10.0, 1e4)  # s = 10: drop-out rates vary by 1/sqrt(10)

    def _ll(self, params: np.ndarray, x: np.ndarray, tx: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        return paretonbd_log_likelihood(params, x, tx, big_t)

    def p_alive_summary(self, summary: pd.DataFrame) -> np.ndarray:
        p = self.params
        r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
        x, tx, big_t = _check_summary(summary)
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
        x, _, big_t = _check_summary(summary)
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


BTYD_FREQUENCY = "btyd_frequency"
BTYD_RECENCY_WEEKS = "btyd_recency_weeks"
BTYD_AGE_WEEKS = "btyd_age_weeks"
BGNBD_EXPECTED = "bgnbd_expected_purchases"
PARETONBD_EXPECTED = "paretonbd_expected_purchases"
PARETONBD_P_ALIVE = "paretonbd_p_alive"
BTYD_FEATURES: tuple[str, ...] = (
    BTYD_FREQUENCY,
    BTYD_RECENCY_WEEKS,
    BTYD_AGE_WEEKS,
    BGNBD_EXPECTED,
    PARETONBD_EXPECTED,
    PARETONBD_P_ALIVE,
)


def build_btyd_features(
    events: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: float, user_ids: pd.Index
) -> pd.DataFrame:
    """BTYD forecasts as features: both models fitted on the purchases before `as_of` only.

    Returns
    -------
    pd.DataFrame
        Index `user_ids`; float64 `BTYD_FEATURES`: x, t_x and T in weeks, the BG/NBD and
        Pareto/NBD expected purchase days in ``[as_of, as_of + horizon_days)`` and the Pareto/NBD
        P(alive). Users without a purchase before `as_of`: NaN summary, 0 expected, NaN P(alive).
    """
    summary = build_rfm_summary(events, as_of=as_of, time_unit_days=7.0)
    index = pd.Index(user_ids, name=USER_ID)
    out = pd.DataFrame(index=index, columns=list(BTYD_FEATURES), dtype="float64")
    if summary.empty:
        out[[BGNBD_EXPECTED, PARETONBD_EXPECTED]] = 0.0
        return out
    bg = BgNbdModel().fit_summary(summary)
    pareto = ParetoNbdModel().fit_summary(summary)
    frame = pd.DataFrame(
        {
            BTYD_FREQUENCY: summary[FREQUENCY].astype("float64"),
            BTYD_RECENCY_WEEKS: summary[RECENCY],
            BTYD_AGE_WEEKS: summary[AGE],
            BGNBD_EXPECTED: bg.expected_purchases_summary(summary, horizon_days=horizon_days),
            PARETONBD_EXPECTED: pareto.expected_purchases_summary(summary, horizon_days=horizon_days),
            PARETONBD_P_ALIVE: pareto.p_alive_summary(summary),
        },
        index=summary.index,
    )
    out = frame.reindex(index)
    out[[BGNBD_EXPECTED, PARETONBD_EXPECTED]] = out[[BGNBD_EXPECTED, PARETONBD_EXPECTED]].fillna(0.0)
    return out.astype("float64")
