"""The storefront's come-back page per user, precomputed from the served snapshot's history.

`ComeBackPages.build` reads the history the snapshot keeps (`training.snapshot_store.read_history`)
and the snapshot's segments and policy actions, and keeps every user's page as numpy arrays
(`training.campaign.comeback.build_come_back`: items bought on the most days with that count,
items favourited and never bought, the offer of the campaign rules for the segment). A request
is then a few array slices. Events accepted since the snapshot (`serving.live.LiveEvents`) count
at once: a purchase adds to the item's count, takes the item off the favourited-not-bought list
and ends the lapsed, wake-up and first-order offers (a lapsed customer who bought is ``regular``
again); a favourite since is listed first unless bought.

Unknown ids get the store's popular items and the new-customer offer (``is_fallback``). A snapshot
written before snapshots kept their history answers with segments and offers only, and says so
in ``note``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import RebuyError
from features.schema import FEATURE_SEGMENT, ITEM_ID, TS, USER_ID, EventType, Segment
from serving.schemas import BoughtItem, ComeBackOffer, ComeBackPageResponse
from training.campaign.comeback import OFFER_ACTION, OFFER_KIND, ComeBackTables, build_come_back
from training.campaign.config import FIRST_ORDER_COUPON, PlanConfig
from training.campaign.history import DAYS_BOUGHT, LAST_BOUGHT
from training.scoring import SUGGESTED_ACTION, CampaignScorer
from training.snapshot_store import read_history

logger = logging.getLogger(__name__)

NO_HISTORY = "this snapshot keeps no history (written before snapshots did): run rebuy refresh"
ENDED_KINDS = frozenset({"come_back_pack", "first_order_coupon", "wake_up_coupon"})
"""Offers a purchase since the snapshot ends."""


@dataclass(frozen=True)
class _Lists:
    """Rows grouped by user: rows of ``users[i]`` are ``start[i]:start[i + 1]``."""

    users: pd.Index
    start: np.ndarray
    items: np.ndarray
    values: np.ndarray

    @classmethod
    def build(cls, user_ids: np.ndarray, items: np.ndarray, values: np.ndarray) -> _Lists:
        if len(user_ids) == 0:
            empty = np.zeros(0, dtype=object)
            return cls(pd.Index(empty), np.zeros(1, dtype=np.int64), empty, np.zeros(0, dtype=np.int64))
        first = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
        return cls(
            pd.Index(user_ids[first]),
            np.r_[first, len(user_ids)].astype(np.int64),
            items,
            values,
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", {u: i for i, u in enumerate(self.users.tolist())})

    def rows(self, user_id: str) -> slice:
        """The slice of `user_id`'s rows (empty for a user without any)."""
        pos = self.positions.get(user_id)  # type: ignore[attr-defined]
        return slice(0, 0) if pos is None else slice(int(self.start[pos]), int(self.start[pos + 1]))


class ComeBackPages:
    """Every user's come-back page as arrays (module docstring); `page` answers one user."""

    def __init__(
        self,
        tables: ComeBackTables | None,
        *,
        scorer: CampaignScorer,
        cold_action: str,
        default_action: str,
    ) -> None:
        self.as_of = scorer.as_of
        self.note = None if tables is not None else NO_HISTORY
        self.cold_action = cold_action
        self.default_action = default_action
        if tables is None:
            empty = np.zeros(0, dtype=object)
            self.bought = _Lists.build(empty, empty, np.zeros(0, dtype=np.int64))
            self.favourites = _Lists.build(empty, empty, np.zeros(0, dtype=np.int64))
            self._last = np.zeros(0, dtype="datetime64[ns]")
            self.popular: list[str] = []
            self._set_offers(pd.DataFrame(columns=[FEATURE_SEGMENT, OFFER_KIND, OFFER_ACTION]))
            self.item_category: pd.Series = pd.Series(dtype="object")
            return
        mb = tables.most_bought
        self.bought = _Lists.build(
            mb[USER_ID].to_numpy(object),
            mb[ITEM_ID].to_numpy(object),
            mb[DAYS_BOUGHT].to_numpy(np.int64),
        )
        self._last = mb[LAST_BOUGHT].to_numpy("datetime64[ns]")
        fav = tables.favourites.sort_values(USER_ID, kind="stable")
        self.favourites = _Lists.build(
            fav[USER_ID].to_numpy(object), fav[ITEM_ID].to_numpy(object), fav[TS].to_numpy("datetime64[ns]")
        )
        self.popular = list(tables.popular)
        self._set_offers(tables.offers)
        self.item_category = tables.item_category

    def _set_offers(self, offers: pd.DataFrame) -> None:
        self.offers = offers
        self._offer_pos = {u: i for i, u in enumerate(offers.index.tolist())}
        self._segments = offers[FEATURE_SEGMENT].to_numpy(object)
        self._kinds = offers[OFFER_KIND].to_numpy(object)
        self._actions = offers[OFFER_ACTION].to_numpy(object)

    @classmethod
    def build(cls, scorer: CampaignScorer, config: PlanConfig) -> ComeBackPages:
        """The pages of every user of `scorer`'s snapshot, from the history it keeps."""
        started = time.perf_counter()
        try:
            history = read_history(scorer.snapshot_dir) if scorer.snapshot_dir is not None else None
        except RebuyError as exc:
            logger.error("cannot read the snapshot's history, come-back pages without it: %s", exc)
            history = None
        cold = str(scorer.cold_.get(SUGGESTED_ACTION, FIRST_ORDER_COUPON))
        policy = scorer.repurchase.config.policy if scorer.repurchase is not None else None
        default = policy.default_action if policy is not None else "no_action"
        tables = None
        if history is not None:
            scores = scorer.score().set_index(USER_ID)
            tables = build_come_back(
                history, users=scorer.features, scores=scores, as_of=scorer.as_of, config=config
            )
        pages = cls(tables, scorer=scorer, cold_action=cold, default_action=default)
        logger.info(
            "come-back pages of %d users as of %s ready in %.2fs%s",
            len(pages.offers),
            scorer.as_of,
            time.perf_counter() - started,
            "" if history is not None else " (no history in the snapshot)",
        )
        return pages

    def page(self, user_id: str, *, k: int, since: Sequence[object] = ()) -> ComeBackPageResponse:
        """The come-back page of `user_id`: `k` items per list; `since` are its live events
        (`serving.live.LiveEvent`, ``ts`` at or after the snapshot's ``as_of``)."""
        rows = self.bought.rows(user_id)
        items, counts, last = self.bought.items[rows], self.bought.values[rows], self._last[rows]
        fav_items = self.favourites.items[self.favourites.rows(user_id)]
        buys = [e for e in since if getattr(e, "event_type", None) == EventType.PURCHASE.value and e.item_id]
        favs = [e for e in since if getattr(e, "event_type", None) == EventType.FAVORITE.value and e.item_id]
        ranked = self._with_live(items, counts, last, buys)
        bought_ids = {i for i, _ in ranked}
        favourites = [e.item_id for e in sorted(favs, key=lambda e: e.ts, reverse=True)] + fav_items.tolist()
        favourites = [i for i in dict.fromkeys(favourites) if i not in bought_ids]
        known = user_id in self.offers.index
        if known:
            row = self.offers.loc[user_id]
            segment, kind, action = (
                str(row[FEATURE_SEGMENT]),
                str(row[OFFER_KIND]) or None,
                str(row[OFFER_ACTION]),
            )
            reason = f"{segment} customer" + (f": {kind}" if kind else ": no lifecycle offer")
        else:
            segment, kind, action = Segment.NEW.value, FIRST_ORDER_COUPON, self.cold_action
            reason = "unknown customer: the new-customer offer"
        if buys and kind in ENDED_KINDS:
            when = max(e.ts for e in buys)
            reason = f"bought on {when:%Y-%m-%d}, after the snapshot: the {kind} offer has ended"
            segment = Segment.REGULAR.value if segment == Segment.LAPSED.value else segment
            kind, action = None, self.default_action
        return ComeBackPageResponse.model_construct(
            user_id=user_id,
            is_fallback=not known,
            segment=segment,
            most_bought=[BoughtItem.model_construct(item_id=i, count=c) for i, c in ranked[:k]],
            favourited_not_bought=favourites[:k],
            popular=self.popular[:k] if not ranked else [],
            offer=ComeBackOffer.model_construct(kind=kind, action=action, reason=reason),
            as_of=self.as_of.to_pydatetime(),
            note=self.note,
        )

    @staticmethod
    def _with_live(
        items: np.ndarray, counts: np.ndarray, last: np.ndarray, buys: Sequence[object]
    ) -> list[tuple[str, int]]:
        """(item, days bought) most first, ties most recent, with the purchases since added."""
        if not buys:
            return list(zip(items.tolist(), counts.tolist(), strict=True))
        stamps = last.tolist()
        rows: dict[str, list] = {
            i: [c, t] for i, c, t in zip(items.tolist(), counts.tolist(), stamps, strict=True)
        }
        days: dict[str, set] = {}
        for e in buys:
            days.setdefault(e.item_id, set()).add(e.ts.normalize())
            row = rows.setdefault(e.item_id, [0, None])
            row[1] = e.ts if row[1] is None else max(pd.Timestamp(row[1]), e.ts)
        for item, d in days.items():
            rows[item][0] += len(d)
        order = sorted(rows.items(), key=lambda kv: (-kv[1][0], -pd.Timestamp(kv[1][1]).value))
        return [(item, int(v[0])) for item, v in order]


__all__ = ["NO_HISTORY", "ComeBackPages"]
