"""Pareto/NBD against the published estimates on the CDNOW sample (Fader & Hardie 2005)."""

from __future__ import annotations

import pandas as pd
import pytest

from training.repurchase.paretonbd import ParetoNbdModel


def test_paretonbd_recovers_published_estimates(cdnow_summary: pd.DataFrame) -> None:
    model = ParetoNbdModel().fit_summary(cdnow_summary)
    expected = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
    for name, value in expected.items():
        assert model.params[name] == pytest.approx(value, rel=5e-3), name
    assert model.log_likelihood_ == pytest.approx(-9595.0, abs=0.5)
