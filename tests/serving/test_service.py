"""The real BentoML server over HTTP, answering from models trained and registered in tmp_path.

The session fixture `trained` (conftest.py) trains the three models on a small sample store into a
SQLite MLflow under tmp_path; a module fixture starts ``bentoml serve serving.service:RebuyService``
on a free port with that REBUY_HOME, and every test calls it over HTTP. Answers are compared with
the same registered models loaded in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from features import schema as s
from tests.serving.server import serve
from training.lineage import calc_data_fingerprint
from training.registry import RegistrySettings, get_alias_version
from training.scoring import CHURN_PROBABILITY, load_registered_recommender, load_registered_scorer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_train_runs_carry_the_data_fingerprint_and_code_version(
    trained: tuple[RegistrySettings, s.StoreTables],
) -> None:
    settings, tables = trained
    expected = calc_data_fingerprint(tables)["hash"]
    client = settings.client()
    runs = {get_alias_version(settings, name).run_id for name in ("rebuy-recommender", "rebuy-repurchase")}
    assert len(runs) == 2
    for run_id in runs:
        tags = client.get_run(run_id).data.tags
        assert tags["data.hash"] == expected and tags["seed.als"] and tags["pkg.lightgbm"]
        assert "git_commit" in tags


@pytest.fixture(scope="module")
def base_url(trained: tuple[RegistrySettings, s.StoreTables]) -> Iterator[str]:
    settings, _ = trained
    with serve(settings.home, {"REBUY_EVENTS_DIR": str(settings.home.parent / "feedback-fuzz")}) as url:
        yield url


def _post(base_url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{base_url}{path}", json=body, timeout=60)


def test_recommend_matches_the_registered_model_in_process(
    base_url: str, trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    settings, tables = trained
    model, version = load_registered_recommender(settings)
    buyers = tables.events.loc[tables.events[s.EVENT_TYPE] == "purchase", s.USER_ID].unique()[:20]
    for user_id, k in zip(buyers, [7, 10] * 10, strict=True):  # k=10 answers come from the precomputed lists
        body = _post(base_url, "/recommend", {"user_id": str(user_id), "k": k}).json()
        expected = model.recommend([str(user_id)], k=k)
        assert [i["item_id"] for i in body["items"]] == expected[s.ITEM_ID].tolist()
        assert [i["reason"] for i in body["items"]] == expected["reason"].tolist()
        assert [i["score"] for i in body["items"]] == pytest.approx(expected["score"].tolist())
        assert body["model_version"] == version and body["is_fallback"] is False


def test_unknown_user_gets_cold_start_picks_from_interest_tags(
    base_url: str, trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    _, tables = trained
    body = _post(base_url, "/recommend", {"user_id": "never-seen", "k": 10, "interest_tags": ["cat"]}).json()
    assert body["is_fallback"] is True and len(body["items"]) == 10
    pet = tables.items.set_index(s.ITEM_ID)[s.PET_TYPE]
    assert all(pet[i["item_id"]] == "cat" for i in body["items"])
    plain = _post(base_url, "/recommend", {"user_id": "never-seen"}).json()
    assert len(plain["items"]) == 10 and plain["is_fallback"] is True


def test_recommend_applies_category_and_exclusions(
    base_url: str, trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    _, tables = trained
    user_id = str(tables.events.loc[tables.events[s.EVENT_TYPE] == "purchase", s.USER_ID].iloc[0])
    first = _post(base_url, "/recommend", {"user_id": user_id, "k": 5, "category": "cat_litter"}).json()
    category = tables.items.set_index(s.ITEM_ID)[s.CATEGORY]
    assert first["items"] and all(category[i["item_id"]] == "cat_litter" for i in first["items"])
    top = first["items"][0]["item_id"]
    second = _post(
        base_url,
        "/recommend",
        {"user_id": user_id, "k": 5, "category": "cat_litter", "exclude_item_ids": [top]},
    ).json()
    assert top not in [i["item_id"] for i in second["items"]]


def test_similar_items_complements_and_unknown_item_fallback(base_url: str) -> None:
    known = _post(base_url, "/similar_items", {"item_id": "i0001", "k": 5, "kind": "complement"}).json()
    assert known["is_fallback"] is False and len(known["items"]) == 5
    assert all(i["item_id"] != "i0001" for i in known["items"])
    unknown = _post(base_url, "/similar_items", {"item_id": "no-such-item", "k": 5}).json()
    assert unknown["is_fallback"] is True and len(unknown["items"]) == 5


def test_churn_scores_match_the_scorer_and_report_unknown_ids(
    base_url: str, trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    settings, tables = trained
    ids = [str(u) for u in tables.users[s.USER_ID].iloc[:50]] + ["ghost-1", "ghost-2"]
    body = _post(base_url, "/churn_scores", {"user_ids": ids}).json()
    assert body["unknown_user_ids"] == ["ghost-1", "ghost-2"]
    expected = load_registered_scorer(settings).score(ids[:50]).set_index(s.USER_ID)
    got = {row["user_id"]: row for row in body["scores"]}
    assert sorted(got) == sorted(ids[:50])
    for user_id, row in got.items():
        assert row["churn_probability"] == pytest.approx(expected.loc[user_id, CHURN_PROBABILITY])
        assert row["risk_band"] in ("low", "medium", "high") and row["suggested_action"]
        assert isinstance(row["top_reasons"], list)


def test_reminder_timing_per_category_with_items(
    base_url: str, trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    _, tables = trained
    purchases = tables.events.loc[tables.events[s.EVENT_TYPE] == "purchase"]
    user_id = str(purchases[s.USER_ID].value_counts().index[0])
    body = _post(base_url, "/reminder_timing", {"user_ids": [user_id, "ghost"]}).json()
    assert body["unknown_user_ids"] == ["ghost"]
    categories = {r["category"] for r in body["reminders"]}
    bought = set(
        purchases.loc[purchases[s.USER_ID] == user_id, s.ITEM_ID].map(
            tables.items.set_index(s.ITEM_ID)[s.CATEGORY]
        )
    )
    assert categories == bought
    for reminder in body["reminders"]:
        assert reminder["reminder_at"] is not None and reminder["items"]
        assert pd.Timestamp(reminder["reminder_at"]).normalize() <= pd.Timestamp(
            reminder["next_purchase_date"]
        )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/recommend", {"user_id": "u1", "k": 0}, "k"),
        ("/recommend", {"user_id": "u1", "k": 101}, "k"),
        ("/recommend", {"k": 3}, "user_id"),
        ("/recommend", {"user_id": ""}, "user_id"),
        ("/similar_items", {"item_id": "i0001", "kind": "sideways"}, "kind"),
        ("/churn_scores", {"user_ids": []}, "user_ids"),
        ("/churn_scores", {"user_ids": [f"u{i}" for i in range(10_001)]}, "user_ids"),
        ("/reminder_timing", {"user_ids": "u1"}, "user_ids"),
    ],
)
def test_bad_requests_get_400_naming_the_field(base_url: str, path: str, body: dict, field: str) -> None:
    response = _post(base_url, path, body)
    assert response.status_code == 400
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}


def test_model_info_health_and_metrics(
    base_url: str, trained: tuple[RegistrySettings, s.StoreTables]
) -> None:
    settings, _ = trained
    info = httpx.get(f"{base_url}/model_info").json()
    names = ("rebuy-recommender", "rebuy-repurchase", "rebuy-timing")
    assert {m["name"]: m["version"] for m in info["models"]} == {
        name: str(get_alias_version(settings, name).version) for name in names
    }
    assert all(m["alias"] == "champion" and m["run_id"] for m in info["models"])
    assert httpx.get(f"{base_url}/readyz").status_code == 200
    assert httpx.get(f"{base_url}/healthz").status_code == 200
    # a request is counted after its response is sent: on a loaded machine the counter of the
    # requests above can trail the next /metrics answer by a moment
    deadline = time.monotonic() + 10.0
    while "bentoml_service_request" not in (text := httpx.get(f"{base_url}/metrics").text):
        assert time.monotonic() < deadline, text[:500]
        time.sleep(0.2)


def test_no_generated_request_gets_a_server_error(base_url: str) -> None:
    """Fuzz every operation of the service's OpenAPI schema (schemathesis): nothing may answer 5xx.

    Requests both valid and invalid by the schema (positive and negative generation): since the
    document tells the truth, the valid ones are answered 200 and the invalid ones 4xx.
    """
    api = schemathesis.openapi.from_url(f"{base_url}/docs.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/recommend",
        "/similar_items",
        "/churn_scores",
        "/reminder_timing",
    }
    failures: list[str] = []
    statuses: list[int] = []
    for operation in operations:

        @given(
            case=operation.as_strategy(GenerationMode.POSITIVE)
            | operation.as_strategy(GenerationMode.NEGATIVE)
        )
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, timeout=60)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.body!r} -> {response.status_code}")

        call()
    assert not failures, failures[:5]
    assert len(statuses) >= 10 * len(operations) and 400 in statuses and 200 in statuses  # it did fuzz
