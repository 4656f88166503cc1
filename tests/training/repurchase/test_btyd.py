"""BG/NBD and Pareto/NBD against the published estimates on the CDNOW sample (Fader, Hardie & Lee 2005)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidInputError, NotFittedError
from training.btyd import AGE, FREQUENCY, RECENCY, BgNbdModel, ParetoNbdModel, build_rfm_summary

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cdnow_sample.txt"


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    raw = pd.read_csv(FIXTURE, sep=r"\s+", header=None, names=["cid", "idx", "date", "cds", "usd"], dtype=str)
    events = pd.DataFrame(
        {
            "user_id": raw["cid"],
            "event_type": "purchase",
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
        }
    )
    return build_rfm_summary(events, as_of=pd.Timestamp("1997-10-01"))  # 39 weeks from 1997-01-01


def test_summary_matches_the_published_cdnow_sample(cdnow_summary: pd.DataFrame) -> None:
    assert len(cdnow_summary) == 2357
    assert cdnow_summary[FREQUENCY].sum() == 2457  # repeat transactions in the calibration period
    assert cdnow_summary[AGE].max() == pytest.approx(38.857, abs=1e-3)


def test_bgnbd_recovers_published_estimates(cdnow_summary: pd.DataFrame) -> None:
    model = BgNbdModel().fit_summary(cdnow_summary)
    expected = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in expected.items():
        assert model.params[name] == pytest.approx(value, abs=2e-3), name
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)  # reported in the paper


def test_paretonbd_recovers_published_estimates(cdnow_summary: pd.DataFrame) -> None:
    model = ParetoNbdModel().fit_summary(cdnow_summary)
    expected = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
    for name, value in expected.items():
        assert model.params[name] == pytest.approx(value, rel=5e-3), name
    assert model.log_likelihood_ == pytest.approx(-9595.0, abs=0.5)


def test_conditional_expectation_grows_with_frequency_and_falls_with_recency_gap() -> None:
    model = BgNbdModel()
    model.params_ = np.array([0.243, 4.414, 0.793, 2.426])
    summary = pd.DataFrame(
        {
            FREQUENCY: [0, 2, 2, 10],
            RECENCY: [0.0, 30.0, 5.0, 30.0],  # row 2: bought twice but long ago
            AGE: [38.0, 38.0, 38.0, 38.0],
        }
    )
    e = model.expected_purchases_summary(summary, horizon_days=39 * 7).to_numpy()
    assert e[1] > e[0] and e[3] > e[1] and e[2] < e[1]
    # published example (Fader et al. 2005, section 4): x=2, t_x=30.43, T=38.86, t=39 -> 1.226
    one = pd.DataFrame({FREQUENCY: [2], RECENCY: [30.43], AGE: [38.86]})
    assert model.expected_purchases_summary(one, horizon_days=39 * 7).iloc[0] == pytest.approx(
        1.226, abs=2e-3
    )


def test_bad_summary_and_unfitted_model_fail_clearly() -> None:
    with pytest.raises(NotFittedError, match="ParetoNbdModel"):
        _ = ParetoNbdModel().params
    bad = pd.DataFrame({FREQUENCY: [1], RECENCY: [5.0], AGE: [2.0]}, index=pd.Index(["u1"]))
    with pytest.raises(InvalidInputError, match="u1"):
        BgNbdModel().fit_summary(bad)
