"""`serving.live_scores.LiveScoreCache`: rows of users with live events, recomputed once per new event."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.feedback import CHAMPION_VARIANT, VARIANT, validate_feedback_events
from features.idempotency import FeedbackLog, event_keys
from serving.live import LiveEvents
from serving.live_scores import LiveScoreCache
from tests.training.test_live_rescore import model_dir  # noqa: F401  (the bundles with history)
from training.scoring import CampaignScorer


@pytest.fixture()
def scorer(model_dir: Path) -> CampaignScorer:  # noqa: F811
    return CampaignScorer.load(model_dir)


def _post(folder: Path, raw: list[dict[str, object]], *, now: pd.Timestamp) -> None:
    frame = validate_feedback_events(raw, now=now).assign(**{VARIANT: CHAMPION_VARIANT})
    FeedbackLog(folder).append(frame, keys=event_keys(raw), received_at=now)


def test_rows_are_recomputed_once_per_new_event_of_a_known_user(
    scorer: CampaignScorer, tmp_path: Path
) -> None:
    user, other = (str(u) for u in scorer.features.index[:2])
    at = scorer.as_of + pd.Timedelta(hours=5)
    now = at + pd.Timedelta(hours=1)
    purchase = {
        "user_id": user, "item_id": "i0001", "event_type": "purchase", "quantity": 1, "price": 10.0,
        "order_id": "o-1", "ts": at.isoformat(),
    }  # fmt: skip
    _post(tmp_path, [purchase, {"user_id": "ghost", "item_id": "i0001", "event_type": "view"}], now=now)
    live = LiveEvents(tmp_path, poll_seconds=0)
    live.poll()
    cache = LiveScoreCache(live, open_wait_seconds=60)  # the history is read in a thread

    first = cache.rows(scorer, [user, other, "ghost"])
    assert set(first) == {user}  # no live event: nothing; signed up since: stays cold-start
    fields, pairs = first[user]
    assert fields["churn_probability"] != pytest.approx(float(scorer.scores_.loc[user, "churn_probability"]))
    assert pairs and all(day >= at.date() for day, _ in pairs.values())
    assert cache.rows(scorer, [user])[user][0] is fields  # same number of events: the cached row

    view = {
        "user_id": user,
        "item_id": "i0002",
        "event_type": "view",
        "ts": (at + pd.Timedelta(days=1)).isoformat(),
    }
    _post(tmp_path, [view], now=now + pd.Timedelta(days=1))
    live.poll()
    again = cache.rows(scorer, [user])[user][0]
    assert again is not fields and again != fields  # a new event: recomputed as of the day after


def test_a_snapshot_without_history_answers_from_the_snapshot(
    scorer: CampaignScorer,
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    scorer.snapshot_dir = model_dir / "timing" / "snapshot"  # saved without history/
    user = str(scorer.features.index[0])
    at = scorer.as_of + pd.Timedelta(hours=5)
    _post(
        tmp_path, [{"user_id": user, "item_id": "i0001", "event_type": "view", "ts": at.isoformat()}], now=at
    )
    live = LiveEvents(tmp_path, poll_seconds=0)
    live.poll()
    assert LiveScoreCache(live, open_wait_seconds=60).rows(scorer, [user]) == {}
