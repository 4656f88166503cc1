"""``/campaign_plan`` and ``/come_back_page`` over HTTP, against ``rebuy plan`` and the history.

One server (auth off) answers from the models of `trained`; the expected plan is `build_plan`
(the code of ``rebuy plan``) on the same store from the snapshot's cut-off, where the budgets do
not bind. Scopes (401/403) and fuzzing of both routes run with the other routes in
``test_guard.py`` and ``test_service.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pandas as pd
import pytest

from features import schema as s
from tests.serving.server import serve
from training.campaign.config import load_plan_config
from training.campaign.history import favourited_not_bought, purchase_table
from training.campaign.plan import PLAN_DTYPES, build_plan
from training.registry import RegistrySettings
from training.scoring import load_registered_scorer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def url(trained: tuple[RegistrySettings, s.StoreTables]) -> Iterator[str]:
    settings, _ = trained
    with serve(settings.home, {"REBUY_EVENTS_DIR": str(settings.home.parent / "feedback-history")}) as base:
        yield base


@pytest.fixture(scope="module")
def as_of(trained: tuple[RegistrySettings, s.StoreTables]) -> pd.Timestamp:
    return load_registered_scorer(trained[0]).as_of


def _post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=120)


def test_plan_rows_of_the_users_asked_equal_the_rebuy_plan_rows(
    url: str, trained: tuple[RegistrySettings, s.StoreTables], as_of: pd.Timestamp
) -> None:
    settings, tables = trained
    scorer = load_registered_scorer(settings)
    expected = build_plan(
        tables,
        as_of=as_of,
        days=14,
        config=load_plan_config(),
        repurchase=scorer.repurchase,
        timing=scorer.timing,
    ).plan
    users = sorted(expected["user_id"].unique())[::3][:60]
    answer = _post(url, "/campaign_plan", {"user_ids": [*users, "never-seen"], "days": 14})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["unknown_user_ids"] == ["never-seen"] and body["first_day"] == str(as_of.date())
    got = pd.DataFrame(body["messages"]).drop(columns="arm")
    got["send_at"] = pd.to_datetime(got["send_at"])
    want = expected.loc[expected["user_id"].isin(users)].reset_index(drop=True)
    assert len(want) >= 20 and set(want["kind"]) >= {"replenishment_reminder"}
    pd.testing.assert_frame_equal(got.astype(PLAN_DTYPES), want.astype(PLAN_DTYPES))

    later = _post(
        url,
        "/campaign_plan",
        {"user_ids": users, "days": 5, "from": str((as_of + pd.Timedelta(days=3)).date())},
    )
    rows = pd.DataFrame(later.json()["messages"])
    window = want.loc[
        (want["send_at"] >= as_of + pd.Timedelta(days=3)) & (want["send_at"] < as_of + pd.Timedelta(days=8))
    ]
    assert len(rows) == len(window) and set(rows["user_id"]) == set(window["user_id"])


def test_unknown_users_get_an_empty_plan_and_far_days_a_note(url: str, as_of: pd.Timestamp) -> None:
    unknown = _post(url, "/campaign_plan", {"user_ids": ["nobody", "nobody-2"]})
    assert unknown.status_code == 200
    assert unknown.json()["messages"] == [] and unknown.json()["unknown_user_ids"] == ["nobody", "nobody-2"]
    far = _post(url, "/campaign_plan", {"user_ids": ["nobody"], "from": "1990-01-01", "days": 3})
    assert far.status_code == 200 and "outside the days planned" in far.json()["note"]
    assert _post(url, "/campaign_plan", {"user_ids": ["u1"], "days": 61}).status_code == 400


def test_come_back_page_lists_favourites_never_bought_and_not_what_was_bought(
    url: str, trained: tuple[RegistrySettings, s.StoreTables], as_of: pd.Timestamp
) -> None:
    _, tables = trained
    purchases = purchase_table(tables, as_of=as_of)
    favourites = favourited_not_bought(tables, purchases, as_of=as_of)
    buyers = set(purchases["user_id"])
    user = next(u for u in favourites["user_id"] if u in buyers)
    favourite = favourites.loc[favourites["user_id"] == user, "item_id"].iloc[0]
    bought = purchases.loc[purchases["user_id"] == user, "item_id"]
    page = _post(url, "/come_back_page", {"user_id": user, "k": 50})
    assert page.status_code == 200, page.text
    body = page.json()
    assert not body["is_fallback"] and body["as_of"].startswith(str(as_of.date()))
    assert favourite in body["favourited_not_bought"]
    assert not set(body["favourited_not_bought"]) & set(bought)
    counts = [row["count"] for row in body["most_bought"]]
    assert counts == sorted(counts, reverse=True) and {r["item_id"] for r in body["most_bought"]} <= set(
        bought
    )
    top = bought.groupby(bought).size()  # purchase lines per item >= purchase days per item
    assert counts[0] <= int(top.max())
    assert body["offer"]["action"]


def test_come_back_page_of_an_unknown_user_shows_popular_items_and_the_new_customer_offer(url: str) -> None:
    page = _post(url, "/come_back_page", {"user_id": "never-seen-user", "k": 5})
    assert page.status_code == 200
    body = page.json()
    assert body["is_fallback"] and body["most_bought"] == [] and len(body["popular"]) == 5
    assert body["offer"]["kind"] == "first_order_coupon" and body["segment"] == "new"


def test_a_purchase_since_the_snapshot_counts_on_the_page_and_in_the_plan(
    url: str, trained: tuple[RegistrySettings, s.StoreTables], as_of: pd.Timestamp
) -> None:
    _, tables = trained
    favourites = favourited_not_bought(tables, purchase_table(tables, as_of=as_of), as_of=as_of)
    user = favourites["user_id"].iloc[0]
    item = favourites.loc[favourites["user_id"] == user, "item_id"].iloc[0]
    event = {
        "user_id": user,
        "item_id": item,
        "event_type": "purchase",
        "quantity": 1,
        "price": 3.0,
        "order_id": "o-h16b",
    }
    assert _post(url, "/events", {"events": [event]}).status_code == 200
    page = _post(url, "/come_back_page", {"user_id": user, "k": 50}).json()
    assert item not in page["favourited_not_bought"] and item in {r["item_id"] for r in page["most_bought"]}
    assert page["segment"] != "lapsed"
    plan = _post(url, "/campaign_plan", {"user_ids": [user]}).json()["messages"]
    assert not [m for m in plan if m["kind"] in ("come_back_pack", "wake_up_coupon", "first_order_coupon")]
