"""The BTYD summary (x, t_x, T) against the published CDNOW sample, and the shared fitter's checks."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import InvalidInputError, NotFittedError
from training.repurchase.bgnbd import BgNbdModel
from training.repurchase.btyd import AGE, FREQUENCY, RECENCY, build_rfm_summary
from training.repurchase.paretonbd import ParetoNbdModel


def test_summary_matches_the_published_cdnow_sample(cdnow_summary: pd.DataFrame) -> None:
    assert len(cdnow_summary) == 2357
    assert cdnow_summary[FREQUENCY].sum() == 2457  # repeat transactions in the calibration period
    assert cdnow_summary[AGE].max() == pytest.approx(38.857, abs=1e-3)


def test_bad_summary_and_unfitted_model_fail_clearly() -> None:
    with pytest.raises(NotFittedError, match="ParetoNbdModel"):
        _ = ParetoNbdModel().params
    bad = pd.DataFrame({FREQUENCY: [1], RECENCY: [5.0], AGE: [2.0]}, index=pd.Index(["u1"]))
    with pytest.raises(InvalidInputError, match="u1"):
        BgNbdModel().fit_summary(bad)


def test_summary_counts_purchase_days_and_ignores_the_cutoff_day_on() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "c"],
            "event_type": ["purchase", "purchase", "purchase", "login", "purchase", "purchase"],
            "ts": pd.to_datetime(
                [
                    "2024-01-01 09:00",  # a: first purchase day
                    "2024-01-01 18:00",  # a: same day, not a repeat
                    "2024-01-15 10:00",  # a: repeat on day 14
                    "2024-01-20 10:00",  # a login: not a purchase
                    "2024-01-29 10:00",  # b: one purchase, on the last day before as_of
                    "2024-01-30 00:00",  # c: at as_of, ignored
                ]
            ),
        }
    ).sample(frac=1.0, random_state=2)
    summary = build_rfm_summary(events, as_of=pd.Timestamp("2024-01-30"), time_unit_days=7.0)
    assert summary.index.tolist() == ["a", "b"]
    assert summary.loc["a"].tolist() == [1.0, 2.0, 4.0]  # x = 1; t_x = 14 days; T = 28 days (to Jan 29)
    assert summary.loc["b"].tolist() == [0.0, 0.0, 0.0]
    assert summary[FREQUENCY].dtype == "int64"
