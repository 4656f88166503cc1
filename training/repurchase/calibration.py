"""Probability calibration of `RepurchaseModel`: a centred isotonic (or Platt) map, saved as JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np

from features.errors import InvalidInputError, NotFittedError


class Calibrator:
    """Monotone map of raw model probabilities to calibrated ones (isotonic or Platt)."""

    def __init__(self, method: Literal["isotonic", "platt"] = "isotonic") -> None:
        self.method = method
        self.params_: dict[str, list[float]] | None = None

    def fit(self, raw: np.ndarray, labels: np.ndarray) -> Self:
        raw = np.asarray(raw, dtype="float64")
        y = np.asarray(labels, dtype="float64")
        if len(raw) == 0 or y.min() == y.max():
            raise InvalidInputError(
                f"calibration: need both outcomes on the calibration cut-off, got {len(raw)} rows with "
                f"{int(y.sum()) if len(y) else 0} positives"
            )
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            self.params_ = _centred_isotonic(raw, iso.predict(raw))
        else:
            from sklearn.linear_model import LogisticRegression

            z = _logit(raw).reshape(-1, 1)
            lr = LogisticRegression(C=1e6).fit(z, y)
            self.params_ = {"coef": [float(lr.coef_[0, 0])], "intercept": [float(lr.intercept_[0])]}
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.params_ is None:
            raise NotFittedError("Calibrator is not fitted: call fit first")
        raw = np.asarray(raw, dtype="float64")
        if self.method == "isotonic":
            return np.interp(raw, *_isotonic_knots(self.params_["x"], self.params_["y"]))
        z = self.params_["coef"][0] * _logit(raw) + self.params_["intercept"][0]
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params_}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        out = cls(data["method"])
        out.params_ = data["params"]
        return out


def _centred_isotonic(raw: np.ndarray, fitted: np.ndarray) -> dict[str, list[float]]:
    """Knots of the centred isotonic map (Oron & Flournoy 2017) through the blocks of a PAV fit.

    Each constant block of the isotonic fit becomes one knot at the block's mean raw score (the
    first and last blocks at the lowest and highest raw score), and `Calibrator.transform`
    interpolates linearly between knots (`_isotonic_knots`). The map is then strictly increasing
    on ``[0, 1]``, so it keeps the model's ranking (the step function of plain isotonic regression ties
    whole blocks of users and loses ROC-AUC) while staying as well calibrated.
    """
    levels, inverse = np.unique(fitted, return_inverse=True)
    centres = np.bincount(inverse, weights=raw) / np.bincount(inverse)
    if len(levels) > 1:
        centres[0], centres[-1] = float(raw.min()), float(raw.max())
    return {"x": centres.tolist(), "y": levels.tolist()}


ISOTONIC_MARGIN = 1e-3
"""Calibrated probabilities stay in ``[margin / 2, 1 - margin / 2]``: a later window is never certain."""


def _isotonic_knots(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation knots of the centred isotonic map over the whole raw range ``[0, 1]``.

    The fitted levels are squeezed affinely into ``[margin, 1 - margin]`` and end knots at raw 0
    and 1 (levels ``margin / 2`` and ``1 - margin / 2``) are added where the fit did not reach
    them, so the map is strictly increasing on ``[0, 1]``: clipping the levels or holding them
    flat beyond the fitted scores would tie users and lose ranking.
    """
    xs = np.asarray(x, dtype="float64")
    ys = ISOTONIC_MARGIN + (1.0 - 2.0 * ISOTONIC_MARGIN) * np.asarray(y, dtype="float64")
    if xs[0] > 0.0:
        xs, ys = np.r_[0.0, xs], np.r_[ISOTONIC_MARGIN / 2, ys]
    if xs[-1] < 1.0:
        xs, ys = np.r_[xs, 1.0], np.r_[ys, 1.0 - ISOTONIC_MARGIN / 2]
    return xs, ys


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
