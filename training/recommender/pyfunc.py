"""MLflow models-from-code entry for `rebuy-recommender`: a pyfunc around a saved `Recommender`.

MLflow logs this file as the model's code and the saved recommender folder as the artifact
``model_dir``; loading rebuilds the recommender with `Recommender.load` (npz/parquet/JSON, no
pickle). ``predict`` takes a frame with ``user_id`` (and optionally ``k``) and returns the
recommendation frame of `Recommender.recommend`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

from features.schema import USER_ID
from training.recommender.model import Recommender

PYFUNC_CODE_PATH = Path(__file__)
"""This file: what `mlflow.pyfunc.log_model(python_model=...)` logs as the model's code."""
MODEL_DIR_ARTIFACT = "model_dir"
"""Name of the artifact holding the saved `Recommender` folder."""


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.recommender = Recommender.load(Path(context.artifacts[MODEL_DIR_ARTIFACT]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        users = pd.DataFrame(model_input)[USER_ID].astype(str).tolist()
        return self.recommender.recommend(users, k=k)


set_model(RecommenderPyfunc())
