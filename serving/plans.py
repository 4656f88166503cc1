"""``/campaign_plan``: the campaign plan of the users a job asks for, from the served snapshot.

`CampaignPlanner.build` runs `training.campaign.plan.prepare_plan` once per served snapshot, on
the history the snapshot keeps (`training.snapshot_store.read_history`) with the snapshot's own
features and scores: the store-wide pieces (replenishable categories, popular items, category
shares, hazard probabilities) are computed at load. A request then runs
`training.campaign.plan.plan_users` for its users: the same code as ``rebuy plan``, so a user's
rows equal that user's rows of ``rebuy plan --from <as_of>`` on the same history.

What holds per request: every per-user rule (one message a day, the weekly cap, quiet hours, the
cool-down after a purchase, ladder order, waits and conditions, the onboarding plan). The daily
message and coupon budgets are store-wide: they belong to the batch plan (``rebuy plan``), and
here bind only across the users of one request.

The plan starts on the snapshot's ``as_of`` day; ``from`` selects the days returned (days before
it are still planned, so the caps and ladders carry over). Days outside ``[as_of day, as_of day +
MAX_HORIZON_DAYS)`` have no messages (``note`` says why). Purchases accepted since the snapshot
(`serving.live`) count: their cool-down applies, and a user who bought since gets no come-back,
first-order, wake-up or re-order message and no reminder of a category bought since
(`training.campaign.plan.drop_bought_since`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence

import pandas as pd

from features.feedback import DEFAULT_SALT
from features.schema import CATEGORY, ITEM_ID, TS, USER_ID, EventType
from serving.schemas import CampaignPlanResponse, PlanMessage
from training.campaign.config import PlanConfig, load_plan_config
from training.campaign.plan import ARM, PlanInputs, plan_users, prepare_plan
from training.campaign.rules import SEND_AT
from training.scoring import CampaignScorer
from training.snapshot_store import read_history

logger = logging.getLogger(__name__)

PLAN_RULES: PlanConfig = load_plan_config()
"""The rules the service plans with: the packaged ``training/campaign/rules.toml``, read once at import
(``rebuy plan`` reads the same file unless given ``--rules``)."""
MAX_PLAN_DAYS = 60
MAX_HORIZON_DAYS = 120
"""Plans reach at most this many days past the snapshot's ``as_of`` day."""
NO_HISTORY = "this snapshot keeps no history (written before snapshots did): run rebuy refresh"
NO_TIMING = "the champion timing model has no user x category model: retrain with rebuy train"


class CampaignPlanner:
    """`PlanInputs` of the served snapshot and the plan of any users (module docstring)."""

    def __init__(
        self,
        inputs: PlanInputs | None,
        *,
        as_of: pd.Timestamp,
        item_category: pd.Series,
        model_version: str = "",
        note: str | None = None,
    ) -> None:
        self.inputs = inputs
        self.as_of = as_of
        self.item_category = item_category
        self.model_version = model_version
        self.note = note

    @classmethod
    def build(cls, scorer: CampaignScorer, config: PlanConfig, *, model_version: str = "") -> CampaignPlanner:
        """Prepare the plans of `scorer`'s snapshot; without its history, a planner that says so."""
        started = time.perf_counter()
        history = read_history(scorer.snapshot_dir) if scorer.snapshot_dir is not None else None
        empty = pd.Series(dtype="object")
        if history is None:
            return cls(
                None, as_of=scorer.as_of, item_category=empty, model_version=model_version, note=NO_HISTORY
            )
        if (
            scorer.repurchase is None
            or scorer.timing is None
            or scorer.timing.category is None
            or scorer.pairs is None
        ):
            return cls(
                None, as_of=scorer.as_of, item_category=empty, model_version=model_version, note=NO_TIMING
            )
        inputs = prepare_plan(
            history,
            as_of=scorer.as_of,
            config=config,
            repurchase=scorer.repurchase,
            timing=scorer.timing,
            features=(scorer.features, scorer.pairs),
            scores=scorer.score().set_index(USER_ID),
        ).with_proposals(MAX_HORIZON_DAYS)
        items = history.items.drop_duplicates(ITEM_ID).set_index(ITEM_ID)[CATEGORY].astype("object")
        logger.info(
            "campaign plans of %d users as of %s prepared in %.2fs",
            len(inputs.user_ids),
            scorer.as_of,
            time.perf_counter() - started,
        )
        return cls(inputs, as_of=scorer.as_of, item_category=items, model_version=model_version)

    def plan(
        self,
        user_ids: Sequence[str],
        *,
        days: int,
        first_day: dt.date | None = None,
        ab_share: float = 0.0,
        ab_salt: str = DEFAULT_SALT,
        since: Mapping[str, Sequence[object]] | None = None,
    ) -> CampaignPlanResponse:
        """The messages of `user_ids` going out on ``[first_day, first_day + days)``.

        Parameters
        ----------
        user_ids
            Requested ids; those the snapshot does not know are listed in ``unknown_user_ids``.
        days
            Days returned (1..`MAX_PLAN_DAYS`).
        first_day
            First day returned (default: the snapshot's ``as_of`` day).
        ab_share, ab_salt
            As ``rebuy plan --ab-share``: users outside the share get the fixed 3/15/28 schedule
            and every row names its ``arm``.
        since
            User id -> live events since ``as_of`` (`serving.live.LiveEvent`).
        """
        ids = list(dict.fromkeys(str(u) for u in user_ids))
        start = self.as_of.normalize()
        first = pd.Timestamp(first_day) if first_day is not None else start
        known = pd.Index(ids).isin(self.inputs.user_ids) if self.inputs is not None else [False] * len(ids)
        unknown = [u for u, k in zip(ids, known, strict=True) if not k]
        lo, hi = max(first, start), first + pd.Timedelta(days=days)
        horizon = (hi - start).days
        note = self.note
        messages: list[PlanMessage] = []
        if note is None and (hi <= lo or horizon > MAX_HORIZON_DAYS):
            note = (
                f"from {first:%Y-%m-%d} for {days} days is outside the days planned from this snapshot: "
                f"{start:%Y-%m-%d} to {start + pd.Timedelta(days=MAX_HORIZON_DAYS - 1):%Y-%m-%d}"
            )
        if note is None and self.inputs is not None:
            wanted = [u for u, k in zip(ids, known, strict=True) if k]
            result = plan_users(
                self.inputs,
                wanted,
                days=horizon,
                ab_share=ab_share,
                ab_salt=ab_salt,
                recent_purchases=self._recent(wanted, since or {}),
            )
            plan = result.plan
            local = plan[SEND_AT].dt.tz_localize("UTC").dt.tz_convert(self.inputs.config.time_zone)
            plan = plan.loc[(local.dt.tz_localize(None).dt.normalize() >= lo).to_numpy()]
            messages = _messages(plan)
        return CampaignPlanResponse.model_construct(
            messages=messages,
            unknown_user_ids=unknown,
            as_of=self.as_of.to_pydatetime(),
            first_day=first.date(),
            days=days,
            note=note,
            model_version=self.model_version,
        )

    def _recent(self, user_ids: Sequence[str], since: Mapping[str, Sequence[object]]) -> pd.DataFrame:
        """Purchases since ``as_of`` of `user_ids` (``user_id``, ``ts``, ``category``)."""
        rows = [
            (u, e.ts, e.item_id)  # type: ignore[attr-defined]
            for u in user_ids
            for e in since.get(u, ())
            if getattr(e, "event_type", None) == EventType.PURCHASE.value
        ]
        frame = pd.DataFrame(rows, columns=[USER_ID, TS, ITEM_ID])
        frame[CATEGORY] = frame[ITEM_ID].map(self.item_category).fillna("").astype(str)
        return frame


def _messages(plan: pd.DataFrame) -> list[PlanMessage]:
    arms = plan[ARM].tolist() if ARM in plan.columns else [None] * len(plan)
    return [
        PlanMessage.model_construct(
            user_id=u,
            send_at=at,
            kind=kind,
            category=cat,
            items=items,
            action=action,
            condition=cond,
            reason=reason,
            expected_hit=float(hit),
            arm=arm,
        )
        for u, at, kind, cat, items, action, cond, reason, hit, arm in zip(
            plan["user_id"].tolist(),
            plan[SEND_AT].dt.to_pydatetime().tolist(),
            plan["kind"].tolist(),
            plan[CATEGORY].tolist(),
            plan["items"].tolist(),
            plan["action"].tolist(),
            plan["condition"].tolist(),
            plan["reason"].tolist(),
            plan["expected_hit"].tolist(),
            arms,
            strict=True,
        )
    ]


__all__ = ["MAX_HORIZON_DAYS", "MAX_PLAN_DAYS", "CampaignPlanner"]
