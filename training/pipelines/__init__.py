"""Pipelines on top of the model packages: train, evaluate, retrain, promote, report.

- `train_recommender`: fit, evaluate, log and register the recommender.
- `evaluate_recommender`: the recommender against its baselines on one time split.
- `train_repurchase`, `evaluate_repurchase`, `evaluate_timing`, `plots`: the same for the
  repurchase and timing models; `snapshot`: the feature snapshot registered with them.
- `champions`: the champions' figures on a challenger's windows.
- `promotion`: when a challenger replaces a champion (`PromotionRule`, `decide`, `Decision`).
- `retrain`: the weekly ``rebuy retrain`` workflow (validate, features, train, compare, promote).
- `report`: the self-contained HTML report of a retrain run.

Import from the modules themselves (``from training.pipelines.retrain import retrain``); this
package re-exports nothing.
"""
