"""`training.live_rescore`: a few users' rows rebuilt from the snapshot's history plus their live events."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features import schema as s
from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.window import default_as_of
from training.feature_cache import FeatureCache
from training.live_rescore import LIVE_SCORE_DTYPES, LIVE_TIMING_DTYPES, LiveRescorer, rescore_users
from training.repurchase.bundle import fit_repurchase_bundle
from training.repurchase.config import load_repurchase_config
from training.scoring import CampaignScorer
from training.snapshot import build_snapshot, save_snapshot
from training.timing.bundle import fit_timing_bundle


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bundles and snapshot as `train_repurchase` saves them (the repurchase one with its history)."""
    cache = FeatureCache(generate_store(SampleConfig(users=400, days=240, seed=4)), load_repurchase_config())
    end = default_as_of(cache.tables)
    root = tmp_path_factory.mktemp("live-bundles")
    users, pairs = build_snapshot(cache, as_of=end)
    assert pairs is not None
    fit_repurchase_bundle(cache, end=end, horizon_days=30).save(root / "repurchase")
    fit_timing_bundle(cache, end=end).save(root / "timing")
    for name in ("repurchase", "timing"):
        save_snapshot(
            root / name / "snapshot",
            users,
            pairs,
            stats=cache.stats(end),
            as_of=end,
            history_of=cache.tables if name == "repurchase" else None,
        )
    return root


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> CampaignScorer:
    return CampaignScorer.load(model_dir)


@pytest.fixture(scope="module")
def rescorer(scorer: CampaignScorer) -> LiveRescorer:
    return LiveRescorer.from_scorer(scorer)


def _events(rows: list[tuple[str, str | None, str, pd.Timestamp]]) -> pd.DataFrame:
    """Contract events from (user, item, type, ts); purchases are 1 x 10.0 in their own order."""
    return pd.DataFrame(
        {
            s.USER_ID: [r[0] for r in rows],
            s.ITEM_ID: [r[1] for r in rows],
            s.EVENT_TYPE: [r[2] for r in rows],
            s.TS: pd.Series([r[3] for r in rows], dtype="datetime64[ns]"),
            s.QUANTITY: [1] * len(rows),
            s.PRICE: [10.0 if r[2] == "purchase" else float("nan") for r in rows],
            s.ORDER_ID: [f"live-{i}" if r[2] == "purchase" else None for i, r in enumerate(rows)],
        }
    )


def _lapsing_buyer(scorer: CampaignScorer) -> str:
    """A buyer whose last order is months old and whose churn score is high."""
    f = scorer.features
    scores = scorer.scores_
    lapsing = f.index[(f[s.FEATURE_ORDERS_TOTAL] > 1) & (f[s.FEATURE_DAYS_SINCE_LAST_PURCHASE] > 60)]
    return str(scores.loc[lapsing, "churn_probability"].idxmax())


def test_an_event_that_changes_no_feature_gives_the_snapshot_row_exactly(
    scorer: CampaignScorer, rescorer: LiveRescorer
) -> None:
    """A view 100 days before the cut-off feeds nothing (views count over 30 days): same builders,
    same statistics, same cut-off, so the rebuilt rows equal the snapshot's to the last bit."""
    users = [str(u) for u in scorer.features.index[:25]]
    old = scorer.as_of - pd.Timedelta(days=100)
    out = rescorer.rescore(_events([(u, "i0001", "view", old) for u in users]))
    assert list(out.scores.columns) == list(LIVE_SCORE_DTYPES)
    assert (out.scores[s.AS_OF] == scorer.as_of).all()
    pd.testing.assert_frame_equal(out.scores.drop(columns=s.AS_OF), scorer.score(sorted(users)))
    pd.testing.assert_frame_equal(
        out.features.loc[:, list(scorer.features.columns)], scorer.features.loc[sorted(users)]
    )
    assert list(out.pairs.columns) == list(LIVE_TIMING_DTYPES)
    pd.testing.assert_frame_equal(
        out.pairs.drop(columns=s.AS_OF), scorer.reminder_timing(sorted(users)).dropna(subset=[s.CATEGORY])
    )


def test_a_purchase_of_a_lapsing_user_recomputes_only_that_user(
    scorer: CampaignScorer, rescorer: LiveRescorer
) -> None:
    user = _lapsing_buyer(scorer)
    other = str(scorer.features.index[scorer.features.index != user][0])
    before = scorer.features.loc[user]
    snapshot_scores = scorer.scores_.copy()
    bought_at = scorer.as_of + pd.Timedelta(hours=30)  # the day after the cut-off, 06:00
    item = str(rescorer.items[s.ITEM_ID].iloc[0])
    out = rescore_users(
        scorer, _events([(user, item, "purchase", bought_at), ("signed-up-since", item, "view", bought_at)])
    )

    assert out.scores[s.USER_ID].tolist() == [user]  # the unknown user stays cold-start
    cut = bought_at.floor("D") + pd.Timedelta(days=1)  # the midnight after the purchase
    row, score = out.features.loc[user], out.scores.iloc[0]
    assert score[s.AS_OF] == cut and row[s.AS_OF] == cut
    assert row[s.FEATURE_DAYS_SINCE_LAST_PURCHASE] == pytest.approx(18 / 24)  # < 1 day
    assert row[s.FEATURE_ORDERS_TOTAL] == before[s.FEATURE_ORDERS_TOTAL] + 1
    assert row[s.FEATURE_ORDERS_30D] == before[s.FEATURE_ORDERS_30D] + 1
    assert row[s.FEATURE_TENURE_DAYS] == pytest.approx(before[s.FEATURE_TENURE_DAYS] + 2)
    assert score["churn_probability"] < scorer.scores_.loc[user, "churn_probability"] - 0.05
    assert score[s.FEATURE_SEGMENT] == row[s.FEATURE_SEGMENT]  # the segment the rebuilt row says
    assert score["next_purchase_date"] >= cut and score["reminder_at"] >= cut
    assert (out.pairs[s.USER_ID] == user).all() and (out.pairs["next_purchase_date"] >= cut).all()
    # the scorer (every other user's answer) is untouched
    pd.testing.assert_frame_equal(scorer.scores_, snapshot_scores)
    pd.testing.assert_frame_equal(scorer.score([other]), snapshot_scores.loc[[other]].reset_index())


def test_users_with_different_latest_days_get_their_own_cut_off(
    scorer: CampaignScorer, rescorer: LiveRescorer
) -> None:
    a, b = (str(u) for u in scorer.features.index[:2])
    day1, day3 = scorer.as_of + pd.Timedelta(hours=1), scorer.as_of + pd.Timedelta(days=2, hours=1)
    events = _events([(b, "i0001", "cart", day3), (a, "i0001", "view", day1), (b, "i0002", "view", day1)])
    out = rescorer.rescore(events.sample(frac=1.0, random_state=0))  # row order does not matter
    cuts = dict(zip(out.scores[s.USER_ID], out.scores[s.AS_OF], strict=True))
    assert cuts == {a: scorer.as_of + pd.Timedelta(days=1), b: scorer.as_of + pd.Timedelta(days=3)}
    hist = rescorer.events
    carts = hist.loc[
        (hist[s.USER_ID] == b)
        & (hist[s.EVENT_TYPE] == "cart")
        & (hist[s.TS] >= cuts[b] - pd.Timedelta(days=30))
    ]
    assert out.features.loc[b, s.FEATURE_CARTS_30D] == len(carts) + 1  # the history's and the live one
    assert out.features.loc[a, s.FEATURE_VIEWS_30D] >= 1


def test_events_without_a_contract_column_are_refused(rescorer: LiveRescorer) -> None:
    with pytest.raises(InvalidInputError, match="price"):
        rescorer.rescore(_events([("u000001", "i0001", "view", rescorer.as_of)]).drop(columns=s.PRICE))


def test_a_snapshot_without_history_cannot_rescore(model_dir: Path) -> None:
    scorer = CampaignScorer.load(model_dir)
    scorer.snapshot_dir = model_dir / "timing" / "snapshot"  # saved without history/
    with pytest.raises(InvalidInputError, match="no history"):
        LiveRescorer.from_scorer(scorer)
