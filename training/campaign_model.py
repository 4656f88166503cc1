"""MLflow models-from-code entry for ``rebuy-repurchase`` and ``rebuy-timing``.

Logged by `training.pipelines.train_repurchase` (its ``MODEL_CODE_PATH`` names this file) with
``python_model=<this file>`` and ``artifacts={"model_dir": folder}``; MLflow runs this file when
loading and it calls `mlflow.models.set_model`. ``predict`` takes a frame with a ``user_id``
column (and ``category`` for the timing model) and returns the campaign scores
(`training.scoring.SCORE_DTYPES`) or the reminder timing per user x category.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model


class CampaignModel(mlflow.pyfunc.PythonModel):
    """Loads one saved bundle folder and its snapshot; kind read from ``bundle.json``."""

    def load_context(self, context: Any) -> None:
        from training.scoring import CampaignScorer

        self.model_dir = Path(context.artifacts["model_dir"])
        self.kind = json.loads((self.model_dir / "bundle.json").read_text())["kind"]
        self._scorer: CampaignScorer | None = None

    def _get_scorer(self) -> Any:
        """The scorer of this folder, built on first use: both bundles' or the timing one alone."""
        from training.scoring import CampaignScorer

        if self._scorer is None:
            if self.kind == "repurchase":
                self._scorer = CampaignScorer.from_dirs(self.model_dir, None)
            else:
                self._scorer = CampaignScorer.from_timing_dir(self.model_dir)
        return self._scorer

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from features.schema import CATEGORY, USER_ID

        ids = model_input[USER_ID].astype(str).tolist()
        if self.kind == "repurchase":
            return self._get_scorer().score(ids)
        categories = sorted(set(model_input[CATEGORY].astype(str))) if CATEGORY in model_input else None
        return self._get_scorer().reminder_timing(ids, categories=categories)


set_model(CampaignModel())
