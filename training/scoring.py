"""Campaign scores per user from the champion models: the offline `rebuy score` path and serving.

`score_feature_table` scores any feature table (``rebuy features`` / `build_feature_table`
output, plus ``active_hour``) in one vectorised pass. `CampaignScorer` holds the two bundles and
the feature snapshot stored with them; it scores the whole snapshot once when loaded, so
`CampaignScorer.score` and `CampaignScorer.reminder_timing` are index look-ups. Unknown user ids
are never dropped: they get ``is_known = False`` and the scores of a user without history.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from features.build_user import USER_FEATURE_DTYPES
from features.errors import InvalidInputError
from features.schema import AS_OF, CATEGORY, FEATURE_SEGMENT, FEATURE_TENURE_DAYS, USER_ID, Segment
from features.timing import ACTIVE_HOUR, DUE_USER_FEATURES, join_pair_features
from training.recommender import Recommender
from training.registry import CHAMPION, RECOMMENDER_MODEL, REPURCHASE_MODEL, TIMING_MODEL, RegistrySettings
from training.repurchase.btyd_features import BGNBD_EXPECTED, BTYD_FEATURES, PARETONBD_EXPECTED
from training.repurchase.bundle import RepurchaseBundle
from training.repurchase.explain import explain_rows
from training.repurchase.model import PurchaseCountModel, RepurchaseModel
from training.repurchase.policy import apply_policy, risk_band
from training.timing.bundle import TimingBundle
from training.timing.schedule import reminder_timestamps

logger = logging.getLogger(__name__)

IS_KNOWN = "is_known"
REPURCHASE_PROBABILITY = "repurchase_probability"
CHURN_PROBABILITY = "churn_probability"
EXPECTED_PURCHASES = "expected_purchases"
EXPECTED_SPEND = "expected_spend"
RISK_BAND = "risk_band"
NEXT_PURCHASE_DATE = "next_purchase_date"
REMINDER_AT = "reminder_at"
SUGGESTED_ACTION = "suggested_action"
TOP_REASONS = "top_reasons"

SCORE_DTYPES: dict[str, object] = {
    USER_ID: "str",
    REPURCHASE_PROBABILITY: "float64",
    CHURN_PROBABILITY: "float64",
    EXPECTED_PURCHASES: "float64",
    EXPECTED_SPEND: "float64",
    RISK_BAND: "str",
    FEATURE_SEGMENT: "str",
    NEXT_PURCHASE_DATE: "datetime64[ns]",
    REMINDER_AT: "datetime64[ns]",
    SUGGESTED_ACTION: "str",
    TOP_REASONS: "str",
    IS_KNOWN: "bool",
}
"""Columns and dtypes of `score_feature_table` and `CampaignScorer.score`, in order."""

TIMING_DTYPES: dict[str, object] = {
    USER_ID: "str",
    CATEGORY: "str",
    NEXT_PURCHASE_DATE: "datetime64[ns]",
    REMINDER_AT: "datetime64[ns]",
    IS_KNOWN: "bool",
}
"""Columns and dtypes of `CampaignScorer.reminder_timing`, in order."""

UNKNOWN_REASON = "unknown customer: scored as a new customer without history"


def score_feature_table(
    features: pd.DataFrame,
    *,
    repurchase: RepurchaseBundle,
    timing: TimingBundle | None,
    as_of: pd.Timestamp | None = None,
    horizon_days: int | None = None,
) -> pd.DataFrame:
    """Scores of every row of a user feature table.

    Parameters
    ----------
    features
        Index ``user_id``; the columns of `build_feature_table` (``as_of`` optional when `as_of`
        is given) and optionally ``active_hour`` (else the store-wide hour).
    repurchase, timing
        Fitted bundles (`timing` None leaves the date columns NaT).
    as_of
        Cut-off of the features; default their ``as_of`` column.
    horizon_days
        Must equal the horizon the repurchase models were trained for (when given).

    Returns
    -------
    pd.DataFrame
        RangeIndex; columns and dtypes of `SCORE_DTYPES` (``is_known`` True).

    Raises
    ------
    InvalidInputError
        Missing or bad feature columns (named), mixed ``as_of``, or another horizon.
    """
    started = time.perf_counter()
    if horizon_days is not None and horizon_days != repurchase.horizon_days:
        raise InvalidInputError(
            f"horizon_days: the repurchase model was trained for {repurchase.horizon_days} days, got {horizon_days}; "
            f"train with --horizon {horizon_days} first"
        )
    if as_of is None:
        if AS_OF not in features.columns or features.empty:
            raise InvalidInputError("features: no as_of column; pass as_of")
        values = features[AS_OF].unique()
        if len(values) != 1:
            raise InvalidInputError(f"features: {len(values)} different as_of values, expected one snapshot")
        as_of = pd.Timestamp(values[0])
    if repurchase.churn is None:
        raise InvalidInputError("repurchase bundle has no churn model (an evaluation-only bundle?)")
    rep = repurchase.repurchase
    x = rep.matrix(features)

    def same_matrix(model: RepurchaseModel | PurchaseCountModel) -> bool:
        return model.vocabulary_ == rep.vocabulary_ and model.feature_names_ == rep.feature_names_

    # every model was fitted on the same feature list and vocabulary construction
    p_buy = rep.predict_proba_array(x, offset=rep.offset(features))
    churn_model = repurchase.churn
    x_churn = x if same_matrix(churn_model) else churn_model.matrix(features)
    p_stay, contributions = churn_model.proba_and_contributions(x_churn)  # one pass for both
    churn = 1.0 - p_stay
    x_counts = x if same_matrix(repurchase.purchases) else repurchase.purchases.matrix(features)
    expected = repurchase.purchases.predict_array(x_counts, offset=repurchase.purchases.offset(features))
    x_spend = x if same_matrix(repurchase.spend) else repurchase.spend.matrix(features)
    spend = repurchase.spend.predict_array(x_spend, offset=repurchase.spend.offset(features))
    band = risk_band(churn, repurchase.config.risk_bands)
    segment = features[FEATURE_SEGMENT].astype("object").to_numpy()
    action = apply_policy(segment, band, repurchase.config.policy)
    reasons = explain_rows(
        -contributions,  # contributions to "buys" log-odds, negated: towards churn
        features.reset_index(drop=True),
        feature_names=churn_model.feature_names_,
        n_reasons=repurchase.config.n_reasons,
    )
    next_date = np.full(len(features), np.datetime64("NaT"), dtype="datetime64[ns]")
    reminder = next_date.copy()
    if timing is not None and len(features):
        reuse = timing.user.vocabulary_ == rep.vocabulary_ and rep.extra_features == []
        probs = timing.user.predict_bins(features, model_matrix=x if reuse else None)
        days = timing.user.days_from_bins(probs)
        next_date = (as_of.value + np.round(days * 86_400) * 10**9).astype("int64").astype("datetime64[ns]")
        reminder_day = timing.user.reminder_days(timing.user.anchor_days(probs))
        hours = (
            features[ACTIVE_HOUR].to_numpy("int64")
            if ACTIVE_HOUR in features.columns
            else np.full(len(features), timing.store_hour)
        )
        reminder = reminder_timestamps(as_of, reminder_day, hours)
    out = pd.DataFrame(
        {
            USER_ID: features.index.to_numpy(),
            REPURCHASE_PROBABILITY: p_buy,
            CHURN_PROBABILITY: churn,
            EXPECTED_PURCHASES: expected,
            EXPECTED_SPEND: spend,
            RISK_BAND: band,
            FEATURE_SEGMENT: segment,
            NEXT_PURCHASE_DATE: next_date,
            REMINDER_AT: reminder,
            SUGGESTED_ACTION: action,
            TOP_REASONS: reasons,
            IS_KNOWN: True,
        }
    ).astype(SCORE_DTYPES)
    logger.info("scored %d users as of %s in %.2fs", len(out), as_of, time.perf_counter() - started)
    return out


def score_pair_table(
    pairs: pd.DataFrame, *, timing: TimingBundle, as_of: pd.Timestamp, hours: np.ndarray
) -> pd.DataFrame:
    """Next purchase date and reminder of every user x category row (the category timing model).

    Parameters
    ----------
    pairs
        Index (``user_id``, ``category``); user features joined to the pair features
        (`features.timing.join_pair_features`), as of `as_of`.
    timing
        Bundle with a category model.
    hours
        int64 hour of day of each row's reminder.

    Returns
    -------
    pd.DataFrame
        Index of `pairs`; ``next_purchase_date`` and ``reminder_at`` (datetime64[ns]).
    """
    model = timing.category
    if model is None:
        raise InvalidInputError("score_pair_table: the timing bundle has no user x category model")
    probs = model.predict_bins(pairs)
    days = model.days_from_bins(probs)
    reminder_day = model.reminder_days(model.anchor_days(probs))
    return pd.DataFrame(
        {
            NEXT_PURCHASE_DATE: (as_of.value + np.round(days * 86_400) * 10**9)
            .astype("int64")
            .astype("datetime64[ns]"),
            REMINDER_AT: reminder_timestamps(as_of, reminder_day, hours),
        },
        index=pairs.index,
    )


def cold_start_features(template: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """One feature row of a user who signed up at `as_of` and did nothing (the unknown-id fallback)."""
    row: dict[str, object] = {}
    for col, dtype in USER_FEATURE_DTYPES.items():
        if dtype == "int64":
            row[col] = 0
        elif dtype == "float64":
            row[col] = np.nan
        else:
            row[col] = pd.NA
    row[FEATURE_TENURE_DAYS] = 0.0
    row[FEATURE_SEGMENT] = Segment.NEW.value
    row["tier"] = "none"
    frame = pd.DataFrame([row], index=pd.Index(["__unknown__"], name=USER_ID))
    frame = frame.astype({c: d for c, d in USER_FEATURE_DTYPES.items() if c in frame.columns})
    frame.insert(0, AS_OF, pd.Series([as_of], index=frame.index, dtype="datetime64[ns]"))
    if ACTIVE_HOUR in template.columns:
        frame[ACTIVE_HOUR] = -1
    for col in DUE_USER_FEATURES:  # nothing bought: no category is due
        frame[col] = np.nan
    for col in (c for c in BTYD_FEATURES if c in template.columns):  # as build_btyd_features: no purchase
        frame[col] = 0.0 if col in (BGNBD_EXPECTED, PARETONBD_EXPECTED) else np.nan
    return frame


class CampaignScorer:
    """Champion repurchase + timing bundles and their feature snapshot, scored once on load.

    Build it with `load`, `from_dirs` or `from_timing_dir` (or the constructor). Without a
    repurchase bundle (the ``rebuy-timing`` model alone) only `reminder_timing` answers.
    """

    def __init__(
        self,
        repurchase: RepurchaseBundle | None,
        timing: TimingBundle | None,
        *,
        features: pd.DataFrame,
        pairs: pd.DataFrame | None,
        as_of: pd.Timestamp,
        snapshot_dir: Path | None = None,
    ) -> None:
        if repurchase is None and timing is None:
            raise InvalidInputError("CampaignScorer: needs a repurchase or a timing bundle, got neither")
        self.repurchase = repurchase
        self.timing = timing
        self.as_of = as_of
        self.features = features
        self.pairs = pairs
        self.snapshot_dir = snapshot_dir
        """Folder of the snapshot served (its ``history/``: `training.snapshot_store.read_history`)."""
        started = time.perf_counter()
        if repurchase is not None:
            self.scores_ = score_feature_table(
                features, repurchase=repurchase, timing=timing, as_of=as_of
            ).set_index(USER_ID)
            cold = cold_start_features(features, as_of)
            if ACTIVE_HOUR in cold.columns and timing is not None:
                cold[ACTIVE_HOUR] = timing.store_hour
            cold_scores = score_feature_table(cold, repurchase=repurchase, timing=timing, as_of=as_of)
            cold_scores[TOP_REASONS] = UNKNOWN_REASON
            cold_scores[IS_KNOWN] = False
            self.cold_ = cold_scores.iloc[0]
        else:  # timing alone: the reminder hour of each user (its time on the cut-off day)
            assert timing is not None
            hours = (
                features[ACTIVE_HOUR].to_numpy("int64")
                if ACTIVE_HOUR in features
                else np.full(len(features), timing.store_hour)
            )
            self.scores_ = pd.DataFrame(
                {REMINDER_AT: reminder_timestamps(as_of, np.zeros(len(features)), hours)},
                index=features.index,
            )
            self.cold_ = pd.Series(
                {REMINDER_AT: reminder_timestamps(as_of, np.zeros(1), np.array([timing.store_hour]))[0]}
            )
        self.pair_scores_ = self._score_pairs()
        logger.info(
            "campaign scorer: %d users, %d user x category pairs as of %s ready in %.2fs",
            len(self.scores_),
            0 if self.pair_scores_ is None else len(self.pair_scores_),
            as_of,
            time.perf_counter() - started,
        )

    def _score_pairs(self) -> pd.DataFrame | None:
        if self.timing is None or self.timing.category is None or self.pairs is None or self.pairs.empty:
            return None
        hours = self.scores_[REMINDER_AT].reindex(self.pairs.index.get_level_values(USER_ID)).dt.hour
        hours = hours.fillna(self.timing.store_hour).to_numpy("int64")
        return score_pair_table(self.pairs, timing=self.timing, as_of=self.as_of, hours=hours)

    @functools.cached_property
    def known_categories(self) -> frozenset[str]:
        """Categories the timing model knows: a store cycle, or bought by a snapshot user."""
        known: set[str] = set()
        if self.timing is not None:
            known.update(self.timing.category_cycles)
        if self.pair_scores_ is not None:
            level = self.pair_scores_.index.names.index(CATEGORY)
            known.update(str(c) for c in self.pair_scores_.index.levels[level])
        return frozenset(known)

    # --- queries
    def score(self, user_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per requested user (all snapshot users when None), in request order.

        Returns
        -------
        pd.DataFrame
            RangeIndex; `SCORE_DTYPES` columns. Unknown ids: ``is_known`` False, the scores of
            a new customer without history and ``top_reasons`` saying so.

        Raises
        ------
        InvalidInputError
            The scorer has no repurchase bundle (`from_timing_dir`).
        """
        if self.repurchase is None:
            raise InvalidInputError("score: this scorer has no repurchase bundle (timing only)")
        if user_ids is None:
            return self.scores_.reset_index().astype(SCORE_DTYPES)
        ids = pd.Index(pd.Series(list(user_ids), dtype="object").astype("str"), name=USER_ID)
        pos = self.scores_.index.get_indexer(ids)
        known = pos >= 0
        out = (
            self.scores_.iloc[np.where(known, pos, 0)].copy()
            if len(self.scores_)
            else pd.DataFrame(
                {c: pd.Series(dtype=d) for c, d in SCORE_DTYPES.items() if c != USER_ID},
                index=range(len(ids)),
            )
        )
        out.index = ids
        if (~known).any():
            for col in out.columns:
                out.loc[~known, col] = self.cold_[col] if col != IS_KNOWN else False
        out[IS_KNOWN] = known
        return out.reset_index().astype(SCORE_DTYPES)

    def _reminder_hours(self, user_ids: pd.Index) -> np.ndarray:
        """int64 hour of day of each user's reminder: the snapshot's, the cold-start one for
        unknown ids, the store hour where there is none."""
        assert self.timing is not None
        pos = self.scores_.index.get_indexer(user_ids)
        at = pd.Series(
            self.scores_[REMINDER_AT].to_numpy()[np.maximum(pos, 0)]
            if len(self.scores_)
            else np.full(len(pos), np.datetime64("NaT"), dtype="datetime64[ns]"),
            dtype="datetime64[ns]",
        )
        at[pos < 0] = self.cold_[REMINDER_AT]
        return at.dt.hour.fillna(self.timing.store_hour).to_numpy("int64")

    def reminder_timing(
        self, user_ids: Sequence[str], *, categories: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Next purchase and reminder per user x category.

        With `categories` None: every category the user bought before (one row with a missing
        category for users without any). With `categories`: every requested pair; pairs never
        bought fall back to the store cycle of the category from the snapshot date
        (``is_known`` False).

        Returns
        -------
        pd.DataFrame
            RangeIndex; `TIMING_DTYPES` columns.
        """
        ids = pd.Index(pd.Series(list(user_ids), dtype="object").astype("str"), name=USER_ID)
        if self.pair_scores_ is None or self.timing is None:
            raise InvalidInputError("reminder_timing: this scorer has no user x category timing model")
        pair_index = self.pair_scores_.index
        if categories is None:
            in_pairs = pair_index.get_level_values(USER_ID).isin(ids)
            found = self.pair_scores_.loc[in_pairs]
            missing = ids[~ids.isin(found.index.get_level_values(USER_ID))]
            wanted = pd.MultiIndex.from_arrays(
                [
                    np.concatenate(
                        [found.index.get_level_values(USER_ID).to_numpy(object), missing.to_numpy(object)]
                    ),
                    np.concatenate(
                        [
                            found.index.get_level_values(CATEGORY).to_numpy(object),
                            np.full(len(missing), None, object),
                        ]
                    ),
                ],
                names=[USER_ID, CATEGORY],
            )
        else:
            wanted = pd.MultiIndex.from_product(
                [ids, pd.Index(list(categories), dtype="object")], names=[USER_ID, CATEGORY]
            )
        pos = pair_index.get_indexer(wanted)
        known = pos >= 0
        next_date = np.full(len(wanted), np.datetime64("NaT"), dtype="datetime64[ns]")
        reminder = next_date.copy()
        if known.any():
            next_date[known] = self.pair_scores_[NEXT_PURCHASE_DATE].to_numpy()[pos[known]]
            reminder[known] = self.pair_scores_[REMINDER_AT].to_numpy()[pos[known]]
        if (~known).any():
            cats = wanted.get_level_values(CATEGORY).to_numpy(object)[~known]
            fallback = self.timing.overall_cycle or 30.0
            cycle = np.array(
                [
                    self.timing.category_cycles.get(str(c), fallback) if c is not None else fallback
                    for c in cats
                ]
            )
            lead = self.timing.category.lead_days_ if self.timing.category is not None else 0
            hour = self._reminder_hours(wanted.get_level_values(USER_ID)[~known])
            next_date[~known] = (
                (self.as_of.value + np.round(cycle * 86_400) * 10**9).astype("int64").astype("datetime64[ns]")
            )
            reminder[~known] = reminder_timestamps(self.as_of, np.maximum(np.floor(cycle) - lead, 0), hour)
        return pd.DataFrame(
            {
                USER_ID: wanted.get_level_values(USER_ID).to_numpy(object),
                CATEGORY: wanted.get_level_values(CATEGORY).to_numpy(object),
                NEXT_PURCHASE_DATE: next_date,
                REMINDER_AT: reminder,
                IS_KNOWN: known,
            }
        ).astype(TIMING_DTYPES)

    # --- loading
    @classmethod
    def from_dirs(cls, repurchase_dir: Path, timing_dir: Path | None) -> Self:
        """Bundles saved by `train_repurchase` (``repurchase/`` and ``timing/`` folders).

        The feature snapshot is the repurchase folder's; the user x category snapshot the
        timing folder's.
        """
        repurchase = RepurchaseBundle.load(repurchase_dir)
        timing = TimingBundle.load(timing_dir) if timing_dir is not None else None
        features, as_of = _read_snapshot(repurchase_dir)
        pairs = None
        if timing_dir is not None:
            t_as_of = _read_snapshot_as_of(timing_dir)
            if t_as_of != as_of:
                logger.warning(
                    "timing snapshot is as of %s but repurchase snapshot as of %s; using the repurchase one",
                    t_as_of,
                    as_of,
                )
            pairs = _read_pairs(timing_dir, features)
        return cls(
            repurchase,
            timing,
            features=features,
            pairs=pairs,
            as_of=as_of,
            snapshot_dir=repurchase_dir / "snapshot",
        )

    @classmethod
    def from_timing_dir(cls, timing_dir: Path) -> Self:
        """The timing bundle alone with its snapshot (the ``rebuy-timing`` pyfunc): `reminder_timing` only."""
        timing = TimingBundle.load(timing_dir)
        features, as_of = _read_snapshot(timing_dir)
        return cls(None, timing, features=features, pairs=_read_pairs(timing_dir, features), as_of=as_of)

    @classmethod
    def load(cls, path: Path) -> Self:
        """A folder with ``repurchase/`` and (optionally) ``timing/`` as written by `train_repurchase`."""
        if not (path / "repurchase" / "bundle.json").exists():
            raise InvalidInputError(
                f"{path}: no repurchase/bundle.json, expected a folder written by rebuy train"
            )
        timing = path / "timing"
        return cls.from_dirs(path / "repurchase", timing if (timing / "bundle.json").exists() else None)


def _read_snapshot_as_of(bundle_dir: Path) -> pd.Timestamp:
    return pd.Timestamp(json.loads((bundle_dir / "snapshot" / "snapshot.json").read_text())[AS_OF])


def _read_snapshot(bundle_dir: Path) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The user feature snapshot stored with a bundle and its cut-off."""
    return pd.read_parquet(bundle_dir / "snapshot" / "features.parquet"), _read_snapshot_as_of(bundle_dir)


def _read_pairs(bundle_dir: Path, features: pd.DataFrame) -> pd.DataFrame:
    """The user x category snapshot stored with a bundle, joined to the user features."""
    pairs = pd.read_parquet(bundle_dir / "snapshot" / "user_category_features.parquet").set_index(
        [USER_ID, CATEGORY]
    )
    return join_pair_features(
        features, pairs[[c for c in pairs.columns if c.startswith("cat_")]].rename(columns=lambda c: c[4:])
    )


def registered_model_dir(
    settings: RegistrySettings, name: str, *, alias: str = CHAMPION, version: str | None = None
) -> Path:
    """Local folder of the ``model_dir`` artifact of ``models:/<name>/<version>`` (or ``@<alias>``)."""
    import mlflow
    import mlflow.pyfunc

    from training.registry import setup_mlflow

    setup_mlflow(settings)
    uri = f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"
    model = mlflow.pyfunc.load_model(uri)
    return Path(model.unwrap_python_model().model_dir)


def load_registered_recommender(
    settings: RegistrySettings,
    *,
    alias: str = CHAMPION,
    version: str | None = None,
    name: str = RECOMMENDER_MODEL,
) -> tuple[Recommender, str]:
    """Download the artifacts of ``<name>@alias`` (or the pinned `version`) and rebuild the recommender.

    Returns
    -------
    tuple[Recommender, str]
        The model and its registry version.
    """
    import mlflow

    from training.registry import get_alias_version, setup_mlflow

    setup_mlflow(settings)
    if version is None:
        found = get_alias_version(settings, name, alias=alias)
        if found is None:
            raise InvalidInputError(f"registry: {name} has no version with alias {alias!r}")
        version = str(found.version)
    with tempfile.TemporaryDirectory(prefix="rebuy-recommender-") as target:  # load reads it all into memory
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=target)
        return Recommender.load(Path(local) / "artifacts" / "model_dir"), version


def load_registered_scorer(
    settings: RegistrySettings,
    *,
    alias: str = CHAMPION,
    versions: Mapping[str, str] | None = None,
    repurchase_model: str = REPURCHASE_MODEL,
    timing_model: str = TIMING_MODEL,
) -> CampaignScorer:
    """`CampaignScorer` of the `alias` versions of the repurchase and timing models.

    `versions` (registered name -> version) pins exact versions instead of resolving `alias`;
    serving resolves the aliases once and loads exactly what it reports.
    """
    versions = versions or {}
    return CampaignScorer.from_dirs(
        registered_model_dir(settings, repurchase_model, alias=alias, version=versions.get(repurchase_model)),
        registered_model_dir(settings, timing_model, alias=alias, version=versions.get(timing_model)),
    )


def load_registered_bundles(
    settings: RegistrySettings, *, alias: str = CHAMPION
) -> tuple[RepurchaseBundle, TimingBundle]:
    """The `alias` bundles without their snapshot (for scoring a fresh feature table)."""
    return (
        RepurchaseBundle.load(registered_model_dir(settings, REPURCHASE_MODEL, alias=alias)),
        TimingBundle.load(registered_model_dir(settings, TIMING_MODEL, alias=alias)),
    )
