"""BG/NBD against the published estimates on the CDNOW sample (Fader, Hardie & Lee 2005)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.repurchase.bgnbd import BgNbdModel
from training.repurchase.btyd import AGE, FREQUENCY, RECENCY


def test_bgnbd_recovers_published_estimates(cdnow_summary: pd.DataFrame) -> None:
    model = BgNbdModel().fit_summary(cdnow_summary)
    expected = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in expected.items():
        assert model.params[name] == pytest.approx(value, abs=2e-3), name
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)  # reported in the paper


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
