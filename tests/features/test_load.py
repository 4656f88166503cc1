"""Reading, validation and quarantine of store folders (features/load.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import schema as s
from features.errors import SchemaError
from features.load import REASON_CODE, load_store, validate_tables, write_quarantine, write_store

ITEMS_CSV = """item_id,category,pet_type,brand,price,tags
i1,cat_dry_food,cat,Acme,20.0,"Cat, Food ,dry"
i2,cat_litter,cat,Acme,8.5,cat
i3,dog_toys,dog,Bark,5,
"""
USERS_CSV = """user_id,signup_ts,interest_tags,channel
u1,2025-01-01T00:00:00,cat,organic
u2,2025-02-01 00:00:00,"dog,toys",social
"""
# One valid row per kind first, then one row per failure; each comment names the rule.
EVENTS_CSV = """user_id,item_id,event_type,ts,quantity,price,order_id
u1,i1,purchase,2025-01-05 10:00:00,2,20.0,o1
u1,,login,2025-01-06 09:00:00,,,
u1,i2,view,2025-01-06 09:01:00,,,
u2,i3,cart,2025-02-02 12:00:00,3,,
"""
GOOD_EVENTS = 4


def _write_store(
    path: Path, events: str = EVENTS_CSV, items: str = ITEMS_CSV, users: str = USERS_CSV
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "events.csv").write_text(events)
    (path / "items.csv").write_text(items)
    (path / "users.csv").write_text(users)
    return path


def test_valid_store_loads_with_contract_dtypes(tmp_path: Path) -> None:
    result = load_store(_write_store(tmp_path))
    assert len(result.events) == GOOD_EVENTS and result.quarantine.empty
    for name in s.TABLES:
        frame = result.tables.table(name)
        assert list(frame.columns) == list(s.TABLE_COLUMNS[name])
        assert {c: str(t) for c, t in frame.dtypes.items()} == {
            c: str(t) for c, t in s.TABLE_DTYPES[name].items()
        }
    login = result.events[result.events[s.EVENT_TYPE] == "login"].iloc[0]
    assert (
        pd.isna(login[s.ITEM_ID]) and login[s.QUANTITY] == 1
    )  # missing quantity on a non-purchase counts as 1
    assert result.items.set_index(s.ITEM_ID).loc["i1", s.TAGS] == "cat,food,dry"  # canonical tags
    assert result.users.set_index(s.USER_ID).loc["u2", s.INTEREST_TAGS] == "dog,toys"
    assert result.events[s.TS].is_monotonic_increasing


@pytest.mark.parametrize(
    ("row", "code", "fragment"),
    [
        (",i1,view,2025-01-06 10:00:00,,,", "missing_user_id", "user_id is missing"),
        ("u1,i1,click,2025-01-06 10:00:00,,,", "invalid_event_type", "got 'click'"),
        ("u1,i1,Purchase,2025-01-06 10:00:00,1,2.0,o9", "invalid_event_type", "got 'Purchase'"),
        ("u1,i1,view,yesterday,,,", "invalid_ts", "ts is not a timestamp: 'yesterday'"),
        ("u1,,view,2025-01-06 10:00:00,,,", "missing_item_id", "non-login"),
        ("u1,i1,purchase,2025-01-06 10:00:00,0,2.0,o9", "invalid_quantity", "got '0'"),
        ("u1,i1,purchase,2025-01-06 10:00:00,1.5,2.0,o9", "invalid_quantity", "got '1.5'"),
        ("u1,i1,purchase,2025-01-06 10:00:00,,2.0,o9", "invalid_quantity", "required for purchases"),
        ("u1,i1,cart,2025-01-06 10:00:00,-1,,", "invalid_quantity", "got '-1'"),
        ("u1,i1,purchase,2025-01-06 10:00:00,1,-3,o9", "invalid_price", "got '-3'"),
        ("u1,i1,purchase,2025-01-06 10:00:00,1,free,o9", "invalid_price", "got 'free'"),
        ("u1,i1,purchase,2025-01-06 10:00:00,1,,o9", "invalid_price", "required for purchases"),
        ("u1,i1,purchase,2025-01-06 10:00:00,1,2.0,", "missing_order_id", "order_id is missing"),
        ("u1,i404,purchase,2025-01-06 10:00:00,1,2.0,o9", "unknown_item_id", "'i404' not in items"),
        ("u404,i1,view,2025-01-06 10:00:00,,,", "unknown_user_id", "'u404' not in users"),
        ("u2,i1,view,2025-01-20 10:00:00,,,", "before_signup", "before the user's signup_ts 2025-02-01"),
        ("u1,i1,purchase,2025-01-05 10:00:00,2,20.0,o1", "duplicate_event", "exact duplicate of row 1"),
    ],
)
def test_invalid_event_row_is_quarantined_and_valid_rows_go_on(
    tmp_path: Path, row: str, code: str, fragment: str
) -> None:
    result = load_store(_write_store(tmp_path, events=EVENTS_CSV + row + "\n"))
    assert len(result.events) == GOOD_EVENTS
    assert len(result.quarantine) == 1
    bad = result.quarantine.iloc[0]
    assert bad[REASON_CODE] == code
    assert fragment in bad[s.REASON]
    assert bad[s.ROW_NUMBER] == GOOD_EVENTS + 1
    assert bad[s.SOURCE_FILE].endswith("events.csv")
    events_report = next(r for r in result.report if r.table == s.EVENTS)
    assert events_report.reasons == {code: 1}
    assert events_report.rows_read == events_report.rows_valid + events_report.rows_quarantined


def test_row_with_several_problems_lists_them_all(tmp_path: Path) -> None:
    row = "u1,i1,purchase,soon,-2,-1,"  # bad ts, quantity, price and order id at once
    result = load_store(_write_store(tmp_path, events=EVENTS_CSV + row + "\n"))
    reason = result.quarantine.iloc[0][s.REASON]
    assert result.quarantine.iloc[0][REASON_CODE] == "invalid_ts"
    for fragment in ("ts is not a timestamp", "quantity", "price", "order_id"):
        assert fragment in reason


def test_invalid_items_and_users_are_quarantined_and_their_events_too(tmp_path: Path) -> None:
    items = ITEMS_CSV + "i1,cat_toys,cat,Acme,3.0,\n" + "i9,,cat,Acme,3.0,\n" + "i8,cat_toys,cat,Acme,-1,\n"
    users = USERS_CSV + "u1,2025-03-01,,\n" + "u7,someday,,\n"
    events = EVENTS_CSV + "u7,i1,view,2025-03-01 10:00:00,,,\n" + "u1,i9,view,2025-03-01 10:00:00,,,\n"
    result = load_store(_write_store(tmp_path, events=events, items=items, users=users))
    q = result.quarantine.set_index(["table", s.ROW_NUMBER])[REASON_CODE].to_dict()
    assert q == {
        ("items", 4): "duplicate_item_id",
        ("items", 5): "missing_category",
        ("items", 6): "invalid_price",
        ("users", 3): "duplicate_user_id",
        ("users", 4): "invalid_signup_ts",
        ("events", 5): "unknown_user_id",  # u7 was quarantined, so its events cannot stand
        ("events", 6): "unknown_item_id",  # i9 was quarantined
    }
    # the first occurrence of a duplicated id is kept, with its original values
    assert result.items.set_index(s.ITEM_ID).loc["i1", s.CATEGORY] == "cat_dry_food"
    assert result.users.set_index(s.USER_ID).loc["u1", s.SIGNUP_TS] == pd.Timestamp("2025-01-01")
    # every source row is accounted for
    for r in result.report:
        assert r.rows_read == r.rows_valid + int((result.quarantine["table"] == r.table).sum())


def test_missing_required_column_stops_naming_file_and_column(tmp_path: Path) -> None:
    events = EVENTS_CSV.replace("event_type", "kind")
    with pytest.raises(SchemaError, match=r"events\.csv.*missing required column\(s\) event_type"):
        load_store(_write_store(tmp_path, events=events))


def test_unreadable_file_stops_with_one_message(tmp_path: Path) -> None:
    _write_store(tmp_path)
    (tmp_path / "items.csv").unlink()
    (tmp_path / "items.parquet").write_bytes(b"\x00garbage, not parquet\xff")
    with pytest.raises(SchemaError, match=r"items\.parquet: cannot read table 'items'"):
        load_store(tmp_path)


def test_missing_table_and_ambiguous_table_are_fatal(tmp_path: Path) -> None:
    _write_store(tmp_path)
    (tmp_path / "users.csv").unlink()
    with pytest.raises(SchemaError, match=r"no table 'users': expected users\.parquet or users\.csv"):
        load_store(tmp_path)
    _write_store(tmp_path)
    (tmp_path / "users.parquet").write_bytes(b"")
    with pytest.raises(SchemaError, match="there twice"):
        load_store(tmp_path)
    with pytest.raises(SchemaError, match="does not exist"):
        load_store(tmp_path / "nowhere")


def test_float_id_column_in_parquet_is_a_schema_error(tmp_path: Path) -> None:
    valid = load_store(_write_store(tmp_path / "csv"))
    out = tmp_path / "pq"
    write_store(valid.tables, out)
    users = pd.read_parquet(out / "users.parquet")
    users[s.USER_ID] = [17850.0, 17851.0]
    users.to_parquet(out / "users.parquet")
    with pytest.raises(SchemaError, match="column user_id has type float64"):
        load_store(out)


def test_parquet_and_csv_round_trip_to_the_same_tables(tmp_path: Path) -> None:
    from_csv = load_store(_write_store(tmp_path / "csv"))
    for fmt in s.FILE_FORMATS:
        write_store(from_csv.tables, tmp_path / fmt, fmt=fmt)
        again = load_store(tmp_path / fmt)
        for name in s.TABLES:
            pd.testing.assert_frame_equal(again.tables.table(name), from_csv.tables.table(name))


def test_typed_parquet_columns_tag_lists_and_time_zones_are_accepted(tmp_path: Path) -> None:
    base = load_store(_write_store(tmp_path / "csv")).tables
    items = base.items.copy()
    items[s.TAGS] = [["Cat", "food"], ["cat"], []]
    users = base.users.copy()
    users[s.SIGNUP_TS] = users[s.SIGNUP_TS].dt.tz_localize(
        "Europe/Berlin"
    )  # 00:00 Berlin = 23:00 UTC the day before
    raw = {s.EVENTS: base.events, s.ITEMS: items, s.USERS: users}
    result = validate_tables(raw)
    assert result.items[s.TAGS].tolist() == ["cat,food", "cat", ""]
    assert result.users[s.SIGNUP_TS].tolist() == [
        pd.Timestamp("2024-12-31 23:00"),
        pd.Timestamp("2025-01-31 23:00"),
    ]


def test_validate_does_not_mutate_its_input_and_ignores_row_order(tmp_path: Path) -> None:
    _write_store(tmp_path)
    raw = {
        name: pd.read_csv(tmp_path / f"{name}.csv", dtype=str, keep_default_na=False, na_values=[""])
        for name in s.TABLES
    }
    before = {k: v.copy() for k, v in raw.items()}
    result = validate_tables(raw)
    for name in s.TABLES:
        pd.testing.assert_frame_equal(raw[name], before[name])
    shuffled = {k: v.sample(frac=1.0, random_state=3) for k, v in raw.items()}
    again = validate_tables(shuffled)
    key = [s.TS, s.USER_ID, s.EVENT_TYPE]
    pd.testing.assert_frame_equal(
        again.events.sort_values(key).reset_index(drop=True),
        result.events.sort_values(key).reset_index(drop=True),
    )


def test_quarantine_file_holds_reason_and_original_values(tmp_path: Path) -> None:
    result = load_store(_write_store(tmp_path, events=EVENTS_CSV + "u1,i1,click,2025-01-06 10:00:00,,,\n"))
    path = write_quarantine(result.quarantine, tmp_path / "q" / "quarantine.csv")
    assert path is not None
    back = pd.read_csv(path, dtype=str)
    assert back.loc[0, s.EVENT_TYPE] == "click" and back.loc[0, REASON_CODE] == "invalid_event_type"
    clean = load_store(_write_store(tmp_path))
    assert write_quarantine(clean.quarantine, path) is None and not path.exists()  # no stale file


def test_validation_of_many_rows_is_vectorised(tmp_path: Path) -> None:
    """200k events with 1% bad rows validate; every bad row is found, none of the good ones."""
    rng = np.random.default_rng(0)
    n = 200_000
    good = load_store(_write_store(tmp_path)).tables
    events = pd.DataFrame(
        {
            s.USER_ID: "u1",
            s.ITEM_ID: rng.choice(["i1", "i2", "i3"], n),
            s.EVENT_TYPE: "view",
            s.TS: (pd.Timestamp("2025-01-02") + pd.to_timedelta(np.arange(n), unit="s")).astype(str),
        }
    )
    bad = rng.choice(n, n // 100, replace=False)
    events.loc[bad, s.EVENT_TYPE] = "oops"
    result = validate_tables({s.EVENTS: events, s.ITEMS: good.items, s.USERS: good.users})
    assert len(result.events) == n - len(bad)
    assert sorted(result.quarantine[s.ROW_NUMBER]) == sorted(bad + 1)


def test_empty_users_table_sets_every_event_aside_as_unknown_user(tmp_path: Path) -> None:
    store = _write_store(tmp_path, users="user_id,signup_ts,interest_tags,channel\n")
    result = load_store(store)
    assert result.events.empty
    events = result.quarantine.loc[result.quarantine["table"] == s.EVENTS]
    assert len(events) == GOOD_EVENTS
    assert set(events[REASON_CODE]) == {"unknown_user_id"}


NOW = pd.Timestamp("2025-03-01 12:00:00")


@pytest.mark.parametrize(
    ("row", "code", "fragment"),
    [
        ("u1,i1,view,2025-03-01T12:30:00,,,", "future_ts", "ts '2025-03-01T12:30:00' is in the future"),
        ("u1,i1,view,2200-01-01T00:00:00,,,", "future_ts", "later than now plus 10 minutes"),
        ("u1,i1,view,2999-06-01T00:00:00,,,", "ts_out_of_range", "ts '2999-06-01T00:00:00' is outside"),
        ("u1,i1,view,0001-01-01T00:00:00,,,", "ts_out_of_range", "ts '0001-01-01T00:00:00' is outside"),
    ],
)
def test_future_and_out_of_range_events_are_set_aside_and_the_rest_goes_on(
    tmp_path: Path, row: str, code: str, fragment: str
) -> None:
    result = load_store(_write_store(tmp_path, events=EVENTS_CSV + row + "\n"), now=NOW)
    assert len(result.events) == GOOD_EVENTS
    assert result.quarantine[REASON_CODE].tolist() == [code]
    assert fragment in result.quarantine[s.REASON].iloc[0]
    assert result.quarantine[s.TS].iloc[0] == row.split(",")[3]  # the raw value is kept
    assert result.fatal_problem is None


def test_events_within_the_clock_skew_are_kept_and_the_skew_is_a_setting(tmp_path: Path) -> None:
    store = _write_store(tmp_path, events=EVENTS_CSV + "u1,i1,view,2025-03-01T12:05:00,,,\n")
    assert len(load_store(store, now=NOW).events) == GOOD_EVENTS + 1  # 5 minutes ahead: within the skew
    strict = load_store(store, now=NOW, max_future_skew_minutes=1)
    assert len(strict.events) == GOOD_EVENTS
    assert strict.quarantine[REASON_CODE].tolist() == ["future_ts"]
    assert "later than now plus 1 minutes (2025-03-01 12:01 UTC)" in strict.quarantine[s.REASON].iloc[0]


def test_out_of_range_timestamps_in_parquet_and_signups_do_not_crash(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    store = _write_store(tmp_path)
    events = pd.read_csv(store / "events.csv", dtype=str)
    stamps = [dt.datetime.fromisoformat(v) for v in events[s.TS]] + [dt.datetime(2999, 1, 1)]
    extra = events.iloc[[2]].assign(**{s.TS: None})
    table = pa.Table.from_pandas(pd.concat([events, extra], ignore_index=True).drop(columns=s.TS))
    table = table.append_column(s.TS, pa.array(stamps, type=pa.timestamp("us")))
    pq.write_table(table, store / "events.parquet")
    (store / "events.csv").unlink()
    (store / "users.csv").write_text(USERS_CSV + "u3,2999-01-01T00:00:00,cat,organic\n")
    result = load_store(store, now=NOW)
    assert len(result.events) == GOOD_EVENTS
    codes = dict(zip(result.quarantine["table"], result.quarantine[REASON_CODE], strict=True))
    assert codes == {s.EVENTS: "ts_out_of_range", s.USERS: "invalid_signup_ts"}
    assert result.events[s.TS].dtype == s.TS_DTYPE


def test_an_events_table_without_valid_rows_is_a_fatal_problem_naming_the_file(tmp_path: Path) -> None:
    header = EVENTS_CSV.splitlines()[0] + "\n"
    empty = load_store(_write_store(tmp_path / "a", events=header))
    assert empty.events.empty and empty.fatal_problem is not None
    assert "events.csv has no rows (a header only)" in empty.fatal_problem
    future = load_store(_write_store(tmp_path / "b", events=header + "u1,i1,view,2200-01-01,,,\n"), now=NOW)
    assert future.fatal_problem is not None
    assert "all 1 rows of" in future.fatal_problem and "(future_ts 1)" in future.fatal_problem
    assert load_store(_write_store(tmp_path / "c")).fatal_problem is None
