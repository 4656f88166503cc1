"""Repurchase, churn and value models: LightGBM on point-in-time user features, calibrated, explained.

One module per concept (the LightGBM settings, shared with `training.timing`, are
`training.lightgbm_config.LightGbmConfig`):

- `config`: `RepurchaseConfig`, `load_repurchase_config` (``training/configs/repurchase.toml``);
- `cutoffs`: the stacked training cut-offs and the calibration cut-off;
- `matrix`: the model feature lists, input checks and `build_model_matrix`;
- `calibration`: the centred isotonic / Platt `Calibrator`;
- `model`: `RepurchaseModel` (repurchase and churn) and `PurchaseCountModel` (purchases, spend);
- `explain`: the top churn reasons in words;
- `policy`: churn risk bands and the campaign action table;
- `btyd` (summary and shared fitter), `bgnbd`, `paretonbd`: the BTYD models, one fitter a file;
  `btyd_features`: their forecasts as LightGBM features; `btyd_recipe`: Pareto/NBD's forecast served
  as the repurchase and value models (recipe ``btyd``); `recipe_choice`: when ``rebuy train`` serves it.
- `baselines`: the recency and RFM-logistic baselines;
- `bundle`: the repurchase, churn and value models fitted together (what serving loads).
"""

from training.repurchase.bgnbd import BgNbdModel
from training.repurchase.calibration import Calibrator
from training.repurchase.config import DEFAULT_CONFIG_PATH, RepurchaseConfig, load_repurchase_config
from training.repurchase.model import PurchaseCountModel, RepurchaseModel
from training.repurchase.paretonbd import ParetoNbdModel
from training.repurchase.policy import PolicyConfig, apply_policy, risk_band

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "BgNbdModel",
    "Calibrator",
    "ParetoNbdModel",
    "PolicyConfig",
    "PurchaseCountModel",
    "RepurchaseConfig",
    "RepurchaseModel",
    "apply_policy",
    "load_repurchase_config",
    "risk_band",
]
