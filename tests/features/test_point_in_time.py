"""Point-in-time: nothing at or after `as_of` may change a feature (hypothesis)."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.bench_features import generate_synthetic
from features.build_category import build_user_category_features
from features.build_stats import calc_store_stats
from features.build_user import build_user_features
from features.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    EVENTS,
    ITEM_ID,
    ORDER_ID,
    SIGNUP_TS,
    TS,
    USER_ID,
    USERS,
    conform,
)

TABLES = generate_synthetic(1_500, days=120, seed=11)
AS_OF = TABLES.events[TS].quantile(0.6).floor("h")
USER_IDS = [*TABLES.users[USER_ID].iloc[:20], "new_user"]
ITEM_IDS = [*TABLES.items[ITEM_ID].iloc[:20], "unknown_item", None]
ORDER_IDS = [*TABLES.events[ORDER_ID].dropna().iloc[:10], "new_order", None]  # reuse open orders too

EXPECTED_USERS = build_user_features(TABLES.events, TABLES.users, as_of=AS_OF, items=TABLES.items)
EXPECTED_CATEGORIES = build_user_category_features(TABLES.events, TABLES.items, as_of=AS_OF)
EXPECTED_STATS = calc_store_stats(TABLES.events, TABLES.items, as_of=AS_OF)

future_event = st.tuples(
    st.sampled_from(USER_IDS),
    st.sampled_from(ITEM_IDS),
    st.sampled_from(EVENT_TYPES),
    st.integers(min_value=0, max_value=400 * 86_400).map(lambda s: AS_OF + pd.Timedelta(seconds=s)),
    st.integers(min_value=1, max_value=5),
    st.floats(min_value=0.0, max_value=1_000.0),
    st.sampled_from(ORDER_IDS),
)


def _with_future(rows: list[tuple], new_signups: list[int], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    extra = conform(pd.DataFrame(rows, columns=list(EVENT_COLUMNS)), EVENTS)
    events = pd.concat([TABLES.events, extra], ignore_index=True).sample(frac=1.0, random_state=seed)
    late_users = TABLES.users.iloc[: len(new_signups)].copy()
    late_users[USER_ID] = [f"late{i}" for i in range(len(new_signups))]
    late_users[SIGNUP_TS] = [AS_OF + pd.Timedelta(hours=h) for h in new_signups]
    users = conform(pd.concat([TABLES.users, late_users], ignore_index=True), USERS)
    return events, users


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(future_event, min_size=1, max_size=30),
    new_signups=st.lists(st.integers(min_value=0, max_value=1_000), max_size=3),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_features_ignore_events_from_as_of_on(rows: list[tuple], new_signups: list[int], seed: int) -> None:
    events, users = _with_future(rows, new_signups, seed)
    assert calc_store_stats(events, TABLES.items, as_of=AS_OF) == EXPECTED_STATS
    pd.testing.assert_frame_equal(
        build_user_features(events, users, as_of=AS_OF, items=TABLES.items), EXPECTED_USERS
    )
    pd.testing.assert_frame_equal(
        build_user_category_features(events, TABLES.items, as_of=AS_OF), EXPECTED_CATEGORIES
    )


def test_the_point_in_time_fixture_is_not_trivial() -> None:
    assert (TABLES.events[TS] >= AS_OF).sum() > 300  # plenty of future events exist in the base store too
    assert EXPECTED_USERS["orders_total"].gt(0).sum() > 10
    assert len(EXPECTED_CATEGORIES) > 10
