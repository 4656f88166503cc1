"""recommend-all on pandas: every user's rows are the per-user `Recommender` answer, unseen users fold in."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.errors import InvalidInputError
from features.sample import SampleConfig, generate_store
from features.schema import EVENT_TYPE, INTEREST_TAGS, ITEM_ID, USER_ID, StoreTables, split_tags
from features.window import default_as_of
from training.batch_recommend import (
    OUTPUT_COLUMNS,
    OUTPUT_DTYPES,
    RECENT_ITEM_IDS,
    build_user_requests,
    read_recommendations,
    recommend_all,
    recommend_users,
    write_recommendations,
)
from training.recommender import IS_FALLBACK, RANK, REASON, SCORE, Recommender, RecommenderConfig
from training.spark.frames import USER_BUCKET, user_bucket

K = 7
RECO = [USER_ID, RANK, ITEM_ID, SCORE, REASON, IS_FALLBACK]


@pytest.fixture(scope="module")
def store() -> StoreTables:
    return generate_store(SampleConfig(users=400, days=200, seed=5))


@pytest.fixture(scope="module")
def held(store) -> list[str]:
    """Every 10th user: left out of training, so unseen by the recommender."""
    return sorted(store.users[USER_ID].astype(str).tolist()[::10])


@pytest.fixture(scope="module")
def model(store, held) -> Recommender:
    events = store.events.loc[~store.events[USER_ID].astype(str).isin(held)]
    train = StoreTables(events=events, items=store.items, users=store.users)
    return Recommender(RecommenderConfig()).fit(train, as_of=default_as_of(store))


@pytest.fixture(scope="module")
def frame(store, model) -> pd.DataFrame:
    return recommend_all(store, model, k=K, model_version="7")


def _item_events(store: StoreTables, user: str) -> list[str]:
    ev = store.events
    mine = ev.loc[(ev[USER_ID].astype(str) == user) & (ev[EVENT_TYPE].astype(str) != "login")]
    return sorted(set(mine[ITEM_ID].dropna().astype(str)))


def _rows(frame: pd.DataFrame, user: str) -> pd.DataFrame:
    return (
        frame.loc[frame[USER_ID] == user, RECO]
        .reset_index(drop=True)
        .astype({USER_ID: object, ITEM_ID: object, REASON: object})
    )


def _plain(reco: pd.DataFrame) -> pd.DataFrame:
    return reco[RECO].reset_index(drop=True).astype({USER_ID: object, ITEM_ID: object, REASON: object})


def test_every_user_of_the_store_gets_k_ranked_rows_with_fixed_columns(frame, store) -> None:
    assert tuple(frame.columns) == OUTPUT_COLUMNS
    assert {c: str(frame[c].dtype) for c in frame.columns} == {
        c: str(pd.api.types.pandas_dtype(d)) for c, d in OUTPUT_DTYPES.items()
    }
    everyone = set(store.users[USER_ID].astype(str)) | set(store.events[USER_ID].astype(str))
    assert set(frame[USER_ID]) == everyone
    counts = frame.groupby(USER_ID).size()
    assert (counts == K).all()
    ranks = frame.groupby(USER_ID)[RANK].apply(list)
    assert all(r == list(range(1, K + 1)) for r in ranks)
    assert (frame["model_version"] == "7").all()
    assert not frame.duplicated([USER_ID, ITEM_ID]).any()


def test_known_users_get_exactly_the_per_user_recommender_answer(frame, model) -> None:
    users = [str(u) for u in model.user_ids[:: max(1, len(model.user_ids) // 60)]]
    for user in users:
        expected = _plain(model.recommend([user], k=K))
        pd.testing.assert_frame_equal(_rows(frame, user), expected, check_exact=False, rtol=1e-12, atol=1e-12)


def test_unseen_users_get_the_recommender_answer_with_their_events_folded_in(
    frame, model, store, held
) -> None:
    for user in held:
        items = _item_events(store, user)
        assert user not in set(model.user_ids)
        expected = _plain(model.recommend([user], k=K, recent_item_ids=items))
        got = _rows(frame, user)
        pd.testing.assert_frame_equal(
            got.drop(columns=IS_FALLBACK),
            expected.drop(columns=IS_FALLBACK),
            check_exact=False,
            rtol=1e-12,
            atol=1e-12,
        )
        # only the popular rows stay flagged as a fallback; the rest came from the user's own events
        assert (got[IS_FALLBACK] == (got[REASON] == "popular")).all()


def test_an_unseen_user_with_purchases_gets_a_personal_non_fallback_list(frame, model, store, held) -> None:
    ev = store.events
    buyers = sorted(set(ev.loc[ev[EVENT_TYPE].astype(str) == "purchase", USER_ID].astype(str)) & set(held))
    assert len(buyers) >= 10
    cold = _plain(model.recommend(["nobody-at-all"], k=K))  # what the cold start gives without events
    for user in buyers:
        got = _rows(frame, user)
        personal = got.loc[~got[IS_FALLBACK]]
        assert len(personal) >= 1, got
        assert personal[REASON].str.startswith(("personal", "complement_of:")).all()
        assert list(got[ITEM_ID]) != list(cold[ITEM_ID])


def test_users_without_item_events_get_the_cold_start_from_their_tags(store, model) -> None:
    tags = "cat,food"
    extra = pd.DataFrame(
        {USER_ID: ["zz-new-1", "zz-new-2"], RECENT_ITEM_IDS: [[], []], INTEREST_TAGS: [tags, ""]}
    )
    got = recommend_users(model, extra, k=K, model_version="7")
    expected = _plain(model.recommend(["zz-new-1"], k=K, interest_tags=split_tags(tags)))
    pd.testing.assert_frame_equal(_rows(got, "zz-new-1"), expected)
    assert got[IS_FALLBACK].all()
    assert list(_rows(got, "zz-new-1")[ITEM_ID]) != list(_rows(got, "zz-new-2")[ITEM_ID])


def test_requests_ignore_the_order_of_events_and_do_not_mutate_the_store(store, model) -> None:
    before = store.events.copy()
    shuffled = StoreTables(
        events=store.events.sample(frac=1.0, random_state=3).reset_index(drop=True),
        items=store.items,
        users=store.users,
    )
    a = build_user_requests(store, known_user_ids=model.user_ids)
    b = build_user_requests(shuffled, known_user_ids=model.user_ids)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(store.events, before)
    known = a[USER_ID].isin(set(model.user_ids))
    assert a.loc[known, RECENT_ITEM_IDS].map(len).eq(0).all()  # the model holds their history


def test_written_output_is_partitioned_by_user_bucket_and_reads_back_the_same(frame, tmp_path: Path) -> None:
    out = tmp_path / "reco"
    write_recommendations(frame, out)
    parts = sorted(p.name for p in out.iterdir())
    assert parts and all(p.startswith(f"{USER_BUCKET}=") for p in parts)
    for part in out.iterdir():
        bucket = int(part.name.split("=")[1])
        users = pd.read_parquet(part)[USER_ID]
        assert (user_bucket(users) == bucket).all()
    back = read_recommendations(out)
    expected = frame.sort_values([USER_ID, RANK]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, expected)
    write_recommendations(frame.iloc[: 3 * K], out)  # an earlier output is replaced, not added to
    assert len(read_recommendations(out)) == 3 * K


def test_an_output_folder_holding_other_files_is_refused_and_left_alone(frame, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match=r"notes\.txt"):
        write_recommendations(frame, out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_k_outside_1_to_100_is_refused(store, model) -> None:
    for k in (0, 101):
        with pytest.raises(InvalidInputError, match="k"):
            recommend_all(store, model, k=k, model_version="7")
