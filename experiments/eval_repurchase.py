"""Repurchase model vs baselines on a time split; CDNOW comparison with BG/NBD and Pareto/NBD.

    python -m experiments.eval_repurchase --cdnow CDNOW_master.txt [--as-of 1998-04-01] [--horizon-days 91]
    python -m experiments.eval_repurchase --data STORE_DIR --as-of 2026-05-01 [--horizon-days 30]

The CDNOW master file ships inside the ``lifetimes`` wheel (``lifetimes/datasets/CDNOW_master.txt``);
it is read through `features.adapters.import_cdnow`, never downloaded. Prints the metric tables.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from features.schema import FEATURE_ORDERS_365D, FEATURE_SPEND_365D, StoreTables
from training.pipelines.evaluate_repurchase import RepurchaseEvaluation, evaluate_repurchase
from training.pipelines.evaluate_timing import TimingEvaluation, evaluate_timing
from training.registry import RegistrySettings
from training.repurchase.config import RepurchaseConfig, load_repurchase_config

logger = logging.getLogger(__name__)

CDNOW_AS_OF = pd.Timestamp("1998-04-01")
CDNOW_HORIZON_DAYS = 91  # 13 weeks


def load_cdnow(path: Path) -> StoreTables:
    from features.adapters import import_cdnow
    from features.load import validate_tables
    from features.schema import TABLES

    imported = import_cdnow(path)
    result = validate_tables(
        {n: imported.tables.table(n) for n in TABLES}, source_files={n: path.name for n in TABLES}
    )
    return result.tables


CDNOW_EXCLUDED_FEATURES = (FEATURE_ORDERS_365D, FEATURE_SPEND_365D)
"""Trailing-year windows: on every training cut-off (history < 1 year) they equal the totals, but
from 1998 on the cohort's first purchases (Jan-Mar 1997) leave the window (at 1998-04-01 every
buyer has ``orders_365d < orders_total`` and 60% have ``orders_365d == 0``, never seen in
training), so the trees must not split on them."""


def cdnow_config(base: RepurchaseConfig, *, btyd_features: bool = False) -> RepurchaseConfig:
    """CDNOW: one cohort acquired Jan-Mar 1997, no logins; fortnightly cut-offs from April 1997.

    The cohort only ages, so the models also train on the calibration cut-off (``cross_fit``).
    Smaller, slower trees (7 leaves, >= 200 rows a leaf, rate 0.02 x 500 rounds) suit the one
    cohort's ~200k stacked rows; `CDNOW_EXCLUDED_FEATURES` are left out. Chosen on the earlier
    cut-offs 1997-11-05, 1997-12-03 and 1997-12-31, whose label windows end by the evaluation
    date 1998-04-01. `btyd_features` stacks BG/NBD and Pareto/NBD fitted point-in-time at every
    cut-off.
    """
    return base.model_copy(
        update={
            "cutoffs": base.cutoffs.model_copy(
                update={"n_train": 8, "step_days": 14, "min_history_days": 60}
            ),
            "cross_fit": True,
            "btyd_features": btyd_features,
            "lightgbm": base.lightgbm.model_copy(
                update={
                    "num_leaves": 7,
                    "min_data_in_leaf": 200,
                    "learning_rate": 0.02,
                    "num_boost_round": 500,
                    "exclude_features": CDNOW_EXCLUDED_FEATURES,
                }
            ),
        }
    )


def log_repurchase_evaluation(
    rep: RepurchaseEvaluation,
    tim: TimingEvaluation | None,
    *,
    tables: StoreTables,
    config: RepurchaseConfig,
    settings: RegistrySettings,
    data_dir: Path | None = None,
) -> str:
    """Log an evaluation to MLflow: params, every model x metric, tables, plots, lineage tags.

    Metric keys are the ones `rebuy train` logs (``lightgbm.roc_auc``,
    ``timing.<model>.<metric>``, ``timing_category.<model>.<metric>``). Plots: ROC,
    calibration, lift and timing error (`training.pipelines.plots.plot_evaluation`).

    Returns
    -------
    str
        The MLflow run id.
    """
    import matplotlib.pyplot as plt
    import mlflow

    from training.lineage import build_lineage, log_lineage, model_seeds
    from training.pipelines.plots import plot_evaluation
    from training.registry import setup_mlflow

    experiment_id = setup_mlflow(settings)
    metrics: dict[str, float] = {}
    tables_out = {"repurchase": rep.table, "calibration": rep.calibration}
    sections = [("", rep.table)]
    if tim is not None:
        sections.append(("timing.", tim.table))
        tables_out["timing"] = tim.table
        if tim.category_table is not None:
            sections.append(("timing_category.", tim.category_table))
            tables_out["timing_category"] = tim.category_table
    for prefix, table in sections:
        for name, row in table.iterrows():
            metrics.update({f"{prefix}{name}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
    with mlflow.start_run(experiment_id=experiment_id, run_name="evaluate-repurchase") as run:
        mlflow.set_tag("rebuy.task", "evaluate-repurchase")
        mlflow.log_params(
            {
                "as_of": str(rep.as_of),
                "horizon_days": rep.horizon_days,
                "n_users": rep.n_users,
                "data_dir": str(data_dir) if data_dir is not None else "",
            }
        )
        mlflow.log_dict(config.model_dump(mode="json"), "config/repurchase_config.json")
        mlflow.log_metrics(metrics)
        for name, table in tables_out.items():
            mlflow.log_text(table.to_csv(), f"evaluation/{name}.csv")
        for path, fig in plot_evaluation(rep, tim).items():
            mlflow.log_figure(fig, path)
            plt.close(fig)
        run_id = run.info.run_id
    seeds = model_seeds(repurchase=config)
    log_lineage(settings.client(), [run_id], build_lineage(tables, as_of=rep.as_of, seeds=seeds))
    return run_id


def format_table(evaluation: RepurchaseEvaluation | TimingEvaluation) -> str:
    return evaluation.table.round(4).to_string()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cdnow", type=Path, help="CDNOW master file")
    source.add_argument("--data", type=Path, help="store folder")
    parser.add_argument("--as-of", type=pd.Timestamp, default=None)
    parser.add_argument("--horizon-days", type=int, default=None)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument(
        "--btyd-features",
        action="store_true",
        help="CDNOW: stack BG/NBD and Pareto/NBD forecasts (fitted before each cut-off) as LightGBM features",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    config = load_repurchase_config(args.config)
    started = time.perf_counter()
    if args.cdnow is not None:
        tables = load_cdnow(args.cdnow)
        config = cdnow_config(config, btyd_features=args.btyd_features)
        as_of = args.as_of or CDNOW_AS_OF
        horizon = args.horizon_days or CDNOW_HORIZON_DAYS
    else:
        from features.load import load_store

        tables = load_store(args.data).tables
        if args.as_of is None:
            parser.error("--as-of is required with --data")
        as_of, horizon = args.as_of, args.horizon_days or config.horizon_days
    rep = evaluate_repurchase(tables, as_of=as_of, horizon_days=horizon, config=config)
    print(
        f"Repurchase within {horizon} days after {as_of:%Y-%m-%d}: {rep.n_users:,} customers, "
        f"{rep.labels.mean():.1%} bought; training cut-offs {rep.bundle.window['train_cutoffs'][0][:10]}.."  # type: ignore[union-attr]
        f"{rep.bundle.window['train_cutoffs'][-1][:10]}, calibration {rep.bundle.window['calibration_cutoff'][:10]}"
    )  # type: ignore[union-attr]
    print(format_table(rep))
    print(
        f"(reference: forecasting 0 purchases for everyone gives mae_purchases {rep.purchases.mean():.4f}; "
        "MAE is minimised by the median, the Poisson deviance by the expected count)"
    )
    print("\nCalibration of the LightGBM probabilities (held-out later cut-off map):")
    print(rep.calibration.round(3).to_string())
    if args.data is not None:
        tim = evaluate_timing(tables, as_of=as_of, config=config)
        print(
            f"\nNext purchase timing within {config.timing.horizon_days} days after {as_of:%Y-%m-%d}: "
            f"{tim.n_users:,} customers, {tim.n_buyers:,} bought again"
        )
        print(format_table(tim))
    print(f"\n({time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
