"""Array helpers of the point-in-time builders (features/arrays.py), on hand-computed inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.arrays import (
    DAY_NS,
    category_codes,
    day_gaps,
    event_code,
    event_type_codes,
    group_median,
    order_codes,
    purchase_cents,
    ts_ns,
    unique_pairs,
)
from features.errors import InvalidInputError
from features.schema import CATEGORY, ITEM_ID, PRICE, QUANTITY, EventType
from tests.features.build_helpers import items_frame


def test_ts_ns_is_nanoseconds_since_the_epoch() -> None:
    epoch = pd.Timestamp("1970-01-01")
    ts = pd.Series([epoch, epoch + pd.Timedelta(days=1), epoch + pd.Timedelta(1, unit="ns")])

    assert ts_ns(ts).tolist() == [0, DAY_NS, 1]
    assert DAY_NS == 86_400 * 1_000_000_000


def test_event_type_codes_follow_the_enum_order_and_unknown_is_minus_one() -> None:
    types = pd.Series(["view", "purchase", "login", "refund", None], dtype="string")

    codes = event_type_codes(types)

    # EventType order: view, favorite, cart, purchase, login
    assert codes.tolist() == [0, 3, 4, -1, -1]
    assert event_code(EventType.PURCHASE) == 3 and event_code(EventType.VIEW) == 0


def test_category_codes_index_sorted_categories_and_flag_unknown_items() -> None:
    items = items_frame({"i1": "toys", "i2": "food", "i3": "toys"})

    codes, categories = category_codes(pd.Series(["i3", "i2", "nope", "i1"]), items)

    assert categories.tolist() == ["food", "toys"]
    assert codes.tolist() == [1, 0, -1, 1]  # "nope" is not in the items table
    assert codes.dtype == np.int64


def test_category_codes_reject_duplicate_item_ids() -> None:
    items = pd.DataFrame({ITEM_ID: ["i1", "i1"], CATEGORY: ["toys", "food"]})

    with pytest.raises(InvalidInputError, match="item_id 'i1' appears more than once"):
        category_codes(pd.Series(["i1"]), items)


def test_order_codes_count_a_purchase_without_order_id_as_one_order_per_ts() -> None:
    order_ids = pd.Series(["o1", "o2", "o1", None, None, None], dtype="string")
    tss = np.array([1, 2, 1, 5, 5, 7], dtype=np.int64)

    codes = order_codes(order_ids, tss)

    # o1 -> 0, o2 -> 1; the missing ones: ts 5 (twice) is one order, ts 7 another
    assert codes.tolist() == [0, 1, 0, 2, 2, 3]
    assert codes.dtype == np.int64


def test_unique_pairs_sorts_distinct_pairs_and_gives_their_starts_in_the_sorted_input() -> None:
    keys = np.array([2, 1, 2, 1, 2])
    values = np.array([5, 3, 5, 4, 1])

    pair_keys, pair_values, starts, order = unique_pairs(keys, values)

    assert list(zip(pair_keys.tolist(), pair_values.tolist(), strict=True)) == [
        (1, 3),
        (1, 4),
        (2, 1),
        (2, 5),
    ]
    # sorted input: (1,3) row 1, (1,4) row 3, (2,1) row 4, (2,5) rows 0 and 2
    assert order.tolist() == [1, 3, 4, 0, 2]
    assert starts.tolist() == [0, 1, 2, 3]
    weights = np.array([10, 20, 30, 40, 50])
    assert np.add.reduceat(weights[order], starts).tolist() == [20, 40, 50, 40]  # per pair: sums


def test_unique_pairs_of_empty_arrays_are_empty() -> None:
    empty = np.array([], dtype=np.int64)

    pair_keys, pair_values, starts, order = unique_pairs(empty, empty)

    assert len(pair_keys) == len(pair_values) == len(starts) == len(order) == 0


def test_day_gaps_are_between_consecutive_distinct_days_of_the_same_key() -> None:
    keys = np.array([1, 1, 1, 2, 2, 1, 3])
    days = np.array([10, 10, 13, 5, 9, 20, 4])  # key 1: days 10 (twice), 13, 20; key 2: 5, 9; key 3: 4

    day_keys, day_values, gap_keys, gaps = day_gaps(keys, days)

    assert day_keys.tolist() == [1, 1, 1, 2, 2, 3]
    assert day_values.tolist() == [10, 13, 20, 5, 9, 4]
    assert gap_keys.tolist() == [1, 1, 2]  # key 3 has one day: no gap; no gap across keys
    assert gaps.tolist() == [3, 7, 4]


def test_group_median_per_key_with_nan_for_keys_without_values() -> None:
    keys = np.array([0, 0, 2, 0])
    values = np.array([1.0, 5.0, 4.0, 3.0])  # key 0: 1, 5, 3 -> 3; key 2: 4

    out = group_median(keys, values, 4)

    assert out[0] == 3.0 and out[2] == 4.0
    assert np.isnan(out[1]) and np.isnan(out[3])
    assert np.isnan(group_median(np.array([], dtype=np.int64), np.array([]), 2)).all()


def test_purchase_cents_are_whole_cents_so_sums_are_exact_in_any_order() -> None:
    purchases = pd.DataFrame(
        {
            QUANTITY: [1, 1, 3, 2],
            PRICE: [0.1, 0.2, 19.99, np.nan],  # 10, 20, 59.97 -> 5997 cents; a missing price counts as 0
        }
    )

    cents = purchase_cents(purchases)

    assert cents.tolist() == [10.0, 20.0, 5997.0, 0.0]
    assert cents.dtype == np.float64
    assert cents[:2].sum() / 100.0 == 0.3  # while 0.1 + 0.2 != 0.3 in floats
    assert cents[::-1].sum() == cents.sum() == 6027.0
