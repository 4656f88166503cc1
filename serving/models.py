"""The models the service answers from: loaded once from the registry, then only queried.

`ServingModels.load` fetches the versions that one alias (``champion`` by default, or the A/B
``challenger``) points to: the recommender and the campaign scorer (repurchase + timing bundles
with the feature snapshot they were trained with). The query methods turn library frames into
response models stamped with the variant they answer for; they never fit anything or recompute
training-time statistics. `serving.state` picks the variant per user and swaps whole sets when
the registry moves.

What is precomputed at load depends on the process's `Role`: the storefront worker keeps the
plain top-10 list of every known user (`DefaultLists`), the campaign worker the featured items
of every user x category pair of the snapshot (`FeaturedItems`; both in `serving.precomputed`,
as numpy arrays). What was not precomputed is computed live, with the same answer.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from features.errors import InvalidInputError
from features.feedback import CHAMPION_VARIANT
from features.schema import CATEGORY, FEATURE_SEGMENT, ITEM_ID, USER_ID
from serving.comeback import ComeBackPages
from serving.plans import PLAN_RULES, CampaignPlanner
from serving.precomputed import (
    DEFAULT_K,
    DefaultLists,
    FeaturedItems,
    featured_items_live,
)
from serving.schemas import (
    ChurnResponse,
    ChurnScore,
    ModelInfo,
    ModelVersionInfo,
    RecommendedItem,
    RecommendResponse,
    ReminderResponse,
    ReminderTiming,
    SimilarItemsResponse,
)
from serving.settings import ServingSettings
from training.recommender import IS_FALLBACK, RANK, REASON, SCORE, Recommender
from training.registry import RegistrySettings, get_alias_version
from training.scoring import (
    CHURN_PROBABILITY,
    EXPECTED_PURCHASES,
    EXPECTED_SPEND,
    IS_KNOWN,
    NEXT_PURCHASE_DATE,
    REMINDER_AT,
    REPURCHASE_PROBABILITY,
    RISK_BAND,
    SUGGESTED_ACTION,
    TOP_REASONS,
    CampaignScorer,
    load_registered_recommender,
    load_registered_scorer,
)
from training.snapshot_store import SnapshotRef

logger = logging.getLogger(__name__)

REASON_SEPARATOR = "; "

Role = Literal["all", "storefront", "campaign"]
"""What a process precomputes at load: the storefront's default lists, the campaign's featured
items, or both (``all``: one process serving every endpoint)."""


def resolve_versions(
    registry: RegistrySettings, names: Sequence[str], *, alias: str
) -> dict[str, ModelVersion | None]:
    """Registered model name -> the version `alias` points to (None when it points nowhere)."""
    return {name: get_alias_version(registry, name, alias=alias) for name in names}


def version_numbers(versions: dict[str, ModelVersion | None]) -> dict[str, str | None]:
    return {name: None if mv is None else str(mv.version) for name, mv in versions.items()}


@dataclass(frozen=True)
class ServingModels:
    """A consistent set of loaded models; swapped as a whole when a new champion is loaded."""

    recommender: Recommender
    recommender_version: str
    scorer: CampaignScorer
    scorer_version: str
    info: ModelInfo
    default_lists: DefaultLists | None
    """Known user -> the answer to a plain request (k=10, no filters), precomputed in batches."""
    featured: FeaturedItems | None = None
    """(user, category) pair of the snapshot -> the items its reminder features."""
    snapshot: SnapshotRef | None = None
    """The refreshed feature snapshot `scorer` serves (`serving.snapshot`); None: the training one."""

    @functools.cached_property
    def come_back(self) -> ComeBackPages:
        """Every user's come-back page from `scorer`'s snapshot (`serving.comeback`), built once per set."""
        return ComeBackPages.build(self.scorer, PLAN_RULES)

    @functools.cached_property
    def planner(self) -> CampaignPlanner:
        """The campaign plans of `scorer`'s snapshot (`serving.plans`), prepared once per set."""
        return CampaignPlanner.build(self.scorer, PLAN_RULES, model_version=self.scorer_version)

    def warm(self, role: Role) -> bool:
        """Build what `role` answers from the snapshot's history now, not in the first request;
        True when something was built (the caller then freezes it out of the collector's reach)."""
        wanted = [
            name
            for name, roles in (("come_back", ("all", "storefront")), ("planner", ("all", "campaign")))
            if role in roles and name not in self.__dict__
        ]
        for name in wanted:
            getattr(self, name)
        return bool(wanted)

    @property
    def versions(self) -> dict[str, str]:
        """Registered model name -> loaded version."""
        return {m.name: m.version for m in self.info.models}

    @classmethod
    def load(
        cls, settings: ServingSettings, *, alias: str | None = None, role: Role = "all"
    ) -> ServingModels:
        """Load the versions of the three registered models that `alias` points to.

        The alias is resolved once and exactly those versions are downloaded, so the set is
        always consistent with the versions it reports even if the alias moves meanwhile.

        Parameters
        ----------
        settings
            Registry and model names.
        alias
            Registry alias; default `settings.alias` (``champion``).
        role
            What to precompute (`Role`); every endpoint answers in every role.

        Raises
        ------
        features.errors.InvalidInputError
            A model has no version under the alias.
        features.errors.RebuyError or mlflow.exceptions.MlflowException
            The artifacts cannot be read.
        """
        alias = alias or settings.alias
        started = time.perf_counter()
        resolved = resolve_versions(settings.registry, settings.model_names, alias=alias)
        missing = [name for name, mv in resolved.items() if mv is None]
        if missing:
            raise InvalidInputError(f"registry: {', '.join(missing)} has no version with alias {alias!r}")
        pinned = {name: str(mv.version) for name, mv in resolved.items() if mv is not None}
        # exact versions, not the alias again: an alias moving meanwhile cannot mix two sets
        recommender, _ = load_registered_recommender(
            settings.registry, version=pinned[settings.recommender_model], name=settings.recommender_model
        )
        scorer = load_registered_scorer(
            settings.registry,
            versions=pinned,
            repurchase_model=settings.repurchase_model,
            timing_model=settings.timing_model,
        )
        versions = []
        for name, mv in resolved.items():
            assert mv is not None  # checked above
            versions.append(
                ModelVersionInfo(
                    name=name,
                    alias=alias,
                    version=str(mv.version),
                    run_id=mv.run_id,
                    trained_as_of=(
                        str(recommender.info["as_of"])
                        if name == settings.recommender_model
                        else scorer.as_of.isoformat()
                    ),
                    data_window=(
                        {
                            k: _jsonable(v)
                            for k, v in recommender.info.items()
                            if k.startswith(("data_", "n_"))
                        }
                        if name == settings.recommender_model
                        else {"as_of": scorer.as_of.isoformat(), "n_users": len(scorer.scores_)}
                    ),
                )
            )
        info = ModelInfo(models=versions, loaded_at=dt.datetime.now(dt.UTC))
        default_lists = DefaultLists.build(recommender) if role in ("all", "storefront") else None
        featured = (
            FeaturedItems.build(recommender, scorer.pair_scores_.index)
            if role in ("all", "campaign") and scorer.pair_scores_ is not None
            else None
        )
        logger.info(
            "loaded %s (%s) in %.1fs",
            ", ".join(f"{v.name} v{v.version}" for v in versions),
            alias,
            time.perf_counter() - started,
        )
        return cls(
            recommender=recommender,
            recommender_version=versions[0].version,
            scorer=scorer,
            scorer_version=versions[1].version,
            info=info,
            default_lists=default_lists,
            featured=featured,
        )

    # --- storefront
    def recommend(
        self,
        user_id: str,
        *,
        k: int,
        category: str | None = None,
        exclude_item_ids: Sequence[str] = (),
        recent_item_ids: Sequence[str] = (),
        interest_tags: Sequence[str] = (),
        variant: str = CHAMPION_VARIANT,
    ) -> RecommendResponse:
        plain = k == DEFAULT_K and not (category or exclude_item_ids or recent_item_ids or interest_tags)
        listed = self.default_lists.get(user_id) if plain and self.default_lists is not None else None
        if listed is not None:
            return RecommendResponse(
                user_id=user_id,
                items=listed,
                is_fallback=False,
                model_version=self.recommender_version,
                variant=variant,
            )
        reco = self.recommender.recommend(
            [user_id],
            k=k,
            category=category,
            exclude_item_ids=exclude_item_ids,
            recent_item_ids=recent_item_ids,
            interest_tags=interest_tags,
        )
        return RecommendResponse(
            user_id=user_id,
            items=_items(reco),
            is_fallback=bool(reco[IS_FALLBACK].all()) if len(reco) else True,
            model_version=self.recommender_version,
            variant=variant,
        )

    def similar_items(
        self, item_id: str, *, k: int, kind: Literal["complement", "similar"]
    ) -> SimilarItemsResponse:
        similar = self.recommender.similar_items([item_id], k=k, kind=kind)
        return SimilarItemsResponse(
            item_id=item_id,
            kind=kind,
            items=_items(similar),
            is_fallback=bool(similar[IS_FALLBACK].all()) if len(similar) else True,
            model_version=self.recommender_version,
        )

    # --- campaign jobs
    def churn_scores(self, user_ids: Sequence[str], *, variant: str = CHAMPION_VARIANT) -> ChurnResponse:
        scores = self.scorer.score(list(user_ids))
        known = scores[IS_KNOWN].to_numpy()
        rows = scores.loc[known]
        out = [
            ChurnScore.model_construct(user_id=uid, **fields, variant=variant)
            for uid, fields in churn_score_fields(rows).items()
        ]
        unknown = list(dict.fromkeys(scores.loc[~known, USER_ID].tolist()))
        return ChurnResponse.model_construct(
            scores=out,
            unknown_user_ids=unknown,
            as_of=self.scorer.as_of.to_pydatetime(),
            model_version=self.scorer_version,
            model_versions={variant: self.scorer_version},
        )

    def reminder_timing(
        self,
        user_ids: Sequence[str],
        *,
        categories: Sequence[str] | None = None,
        variant: str = CHAMPION_VARIANT,
    ) -> ReminderResponse:
        """Reminders per user x category; requested categories the store does not know get none.

        Unknown users are listed in ``unknown_user_ids``, unknown categories in
        ``unknown_categories`` (in request order, once each).
        """
        ids = list(dict.fromkeys(user_ids))
        known_users = self.scorer.score(ids)
        unknown = known_users.loc[~known_users[IS_KNOWN].to_numpy(), USER_ID].tolist()
        unknown_categories: list[str] = []
        if categories is not None:
            known = self.scorer.known_categories
            wanted = list(dict.fromkeys(str(c) for c in categories))
            unknown_categories = [c for c in wanted if c not in known]
            categories = [c for c in wanted if c in known]
        skip = set(unknown)
        users = [u for u in ids if u not in skip]
        if categories == [] or not users:
            timing = self.scorer.reminder_timing([], categories=None).iloc[:0]
        else:
            timing = self.scorer.reminder_timing(users, categories=categories)
        timing = timing.loc[timing[CATEGORY].notna()]
        reminder_users = timing[USER_ID].to_numpy(dtype=object)
        reminder_cats = timing[CATEGORY].to_numpy(dtype=object)
        items = self._featured_lists(reminder_users, reminder_cats)
        days = timing[NEXT_PURCHASE_DATE].to_numpy("datetime64[ns]").astype("datetime64[D]").tolist()
        at = timing[REMINDER_AT].to_numpy("datetime64[ns]").astype("datetime64[us]").tolist()
        reminders = [
            ReminderTiming.model_construct(
                user_id=uid,
                category=cat,
                next_purchase_date=day,
                reminder_at=when,
                items=row,
                variant=variant,
            )
            for uid, cat, day, when, row in zip(
                reminder_users.tolist(), reminder_cats.tolist(), days, at, items, strict=True
            )
        ]
        return ReminderResponse.model_construct(
            reminders=reminders,
            unknown_user_ids=unknown,
            unknown_categories=unknown_categories,
            model_version=self.scorer_version,
            model_versions={variant: self.scorer_version},
            as_of=self.scorer.as_of.to_pydatetime(),
        )

    def _featured_lists(self, users: np.ndarray, categories: np.ndarray) -> list[list[str]]:
        """Featured items of each (user, category) pair: precomputed where there, else live."""
        out: list[list[str]] = [[] for _ in range(len(users))]
        pos = (
            self.featured.positions(users, categories)
            if self.featured is not None
            else np.full(len(users), -1, dtype=np.int64)
        )
        if self.featured is not None and (pos >= 0).any():
            found = np.flatnonzero(pos >= 0)
            for i, row in zip(found.tolist(), self.featured.lists(pos[found]), strict=True):
                out[i] = row
        missing = np.flatnonzero(pos < 0)
        if len(missing):
            live = featured_items_live(self.recommender, users[missing], categories[missing])
            for i, uid, cat in zip(
                missing.tolist(), users[missing].tolist(), categories[missing].tolist(), strict=True
            ):
                out[i] = live.get((uid, cat), [])
        return out


def churn_score_fields(rows: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Per user of score rows (`training.scoring.SCORE_DTYPES`), the `ChurnScore` fields but
    ``user_id`` and ``variant``: one conversion for the snapshot's rows and the live ones."""
    next_dates = rows[NEXT_PURCHASE_DATE].dt.date.to_numpy(dtype=object)
    return {
        uid: {
            "churn_probability": float(churn),
            "repurchase_probability": float(rep),
            "expected_purchases": float(n),
            "expected_spend": float(spend),
            "risk_band": band,
            "segment": segment,
            "top_reasons": reasons.split(REASON_SEPARATOR) if reasons else [],
            "suggested_action": action,
            "next_purchase_date": None if pd.isna(day) else day,
        }
        for uid, churn, rep, n, spend, band, segment, reasons, action, day in zip(
            rows[USER_ID].tolist(),
            rows[CHURN_PROBABILITY].tolist(),
            rows[REPURCHASE_PROBABILITY].tolist(),
            rows[EXPECTED_PURCHASES].tolist(),
            rows[EXPECTED_SPEND].tolist(),
            rows[RISK_BAND].tolist(),
            rows[FEATURE_SEGMENT].tolist(),
            rows[TOP_REASONS].tolist(),
            rows[SUGGESTED_ACTION].tolist(),
            next_dates,
            strict=True,
        )
    }


def _items(frame: pd.DataFrame) -> list[RecommendedItem]:
    return [
        RecommendedItem(item_id=item, score=float(score), rank=int(rank), reason=reason)
        for item, score, rank, reason in zip(
            frame[ITEM_ID].tolist(),
            frame[SCORE].tolist(),
            frame[RANK].tolist(),
            frame[REASON].tolist(),
            strict=True,
        )
    ]


def _jsonable(value: object) -> str | int | None:
    if value is None or isinstance(value, int | str):
        return value
    if isinstance(value, np.integer):
        return int(value)
    return str(value)
