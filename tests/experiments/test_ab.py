"""A/B evaluation: interval formulas against published and hand-computed values, and conversion
per variant on a synthetic feedback log whose answer is known."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import chi2_contingency
from typer.testing import CliRunner

from experiments.ab import (
    CONVERSION_RATE,
    CONVERTERS,
    REVENUE_PER_VISITOR,
    VISITORS,
    calc_newcombe_interval,
    calc_two_proportion_p_value,
    calc_wilson_interval,
    evaluate_ab,
    evaluate_ab_folder,
)
from features.errors import InvalidInputError
from features.feedback import VARIANT, append_feedback_events, load_feedback, validate_feedback_events
from rebuy.cli import app
from training.registry import RegistrySettings

DAY = pd.Timestamp("2026-11-02")


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # by hand: z=1.96, p=.1, n=100: centre (.1+.019208)/1.038415=.114799,
        # half 1.96*sqrt(.0009+.000096)/1.038415=.059568
        (10, 100, 0.0552, 0.1744),
    ],
)
def test_wilson_interval_matches_published_and_hand_computed_values(
    successes: int, n: int, low: float, high: float
) -> None:
    assert calc_wilson_interval(successes, n) == pytest.approx((low, high), abs=6e-5)


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        ((48, 80), (56, 70), 0.0524, 0.3339),  # Newcombe (1998), Statistics in Medicine 17:873, method 10
        ((3, 10), (9, 10), 0.1705, 0.8090),
        ((2, 7), (6, 7), 0.0582, 0.8062),
        ((0, 29), (5, 56), -0.0381, 0.1926),
    ],
)
def test_newcombe_interval_of_a_difference_matches_published_values(
    a: tuple[int, int], b: tuple[int, int], low: float, high: float
) -> None:
    assert calc_newcombe_interval(*a, *b) == pytest.approx((low, high), abs=6e-5)


@pytest.mark.parametrize(("a", "b"), [((48, 80), (56, 70)), ((20, 200), (15, 100)), ((3, 1000), (9, 1000))])
def test_z_test_p_value_equals_pearson_chi_square_without_correction(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    table = [[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]]
    expected = chi2_contingency(table, correction=False).pvalue
    assert calc_two_proportion_p_value(*a, *b) == pytest.approx(expected, rel=1e-9)


def test_empty_groups_give_nan_and_impossible_counts_are_rejected() -> None:
    assert all(math.isnan(v) for v in calc_wilson_interval(0, 0))
    assert math.isnan(calc_two_proportion_p_value(0, 0, 3, 10))
    assert calc_two_proportion_p_value(0, 10, 0, 20) == 1.0  # nobody converted anywhere: no evidence
    with pytest.raises(InvalidInputError, match="successes"):
        calc_wilson_interval(11, 10)
    with pytest.raises(InvalidInputError, match="confidence"):
        calc_wilson_interval(1, 10, confidence=1.5)


def _write_log(folder: Path, users: dict[str, tuple[str, bool]], *, extra: list[dict] | None = None) -> None:
    """Each user: a view and a cart on DAY; converters also buy 2 x 5.0. `users`: id -> (variant, converts)."""
    events: list[dict] = []
    for user, (_, converts) in users.items():
        events += [
            {"user_id": user, "item_id": "i1", "event_type": "view", "ts": f"{DAY.date()}T09:00:00"},
            {"user_id": user, "item_id": "i1", "event_type": "cart", "ts": f"{DAY.date()}T09:05:00"},
        ]
        if converts:
            events.append(
                {"user_id": user, "item_id": "i1", "event_type": "purchase", "ts": f"{DAY.date()}T09:10:00",
                 "quantity": 2, "price": 5.0, "order_id": f"o-{user}"}
            )  # fmt: skip
    events += extra or []
    frame = validate_feedback_events(events, now=DAY)
    variant_of = {u: v for u, (v, _) in users.items()}
    frame[VARIANT] = [variant_of.get(u, "champion") for u in frame["user_id"]]
    for start in range(0, len(frame), 900):
        append_feedback_events(frame.iloc[start : start + 900], folder, received_at=DAY)


def test_conversion_per_variant_on_a_log_with_known_answers(tmp_path: Path) -> None:
    users = {f"c{i}": ("champion", i < 20) for i in range(200)}  # 20 of 200 convert
    users |= {f"t{i}": ("challenger", i < 15) for i in range(100)}  # 15 of 100 convert
    outside = [  # a purchase after the window, by a champion user who did not convert inside it
        {"user_id": "c150", "item_id": "i1", "event_type": "purchase", "ts": "2026-12-01T00:00:00",
         "quantity": 1, "price": 99.0, "order_id": "late"}
    ]  # fmt: skip
    _write_log(tmp_path, users, extra=outside)

    result = evaluate_ab_folder(tmp_path, since=DAY, until=DAY + pd.Timedelta(days=1))

    table = result.table
    assert table.loc["champion", [VISITORS, CONVERTERS]].tolist() == [200, 20]
    assert table.loc["challenger", [VISITORS, CONVERTERS]].tolist() == [100, 15]
    assert table[CONVERSION_RATE].tolist() == pytest.approx([0.10, 0.15])
    assert table[REVENUE_PER_VISITOR].tolist() == pytest.approx([20 * 10.0 / 200, 15 * 10.0 / 100])
    assert table.loc["challenger", ["ci_low", "ci_high"]].tolist() == pytest.approx(
        calc_wilson_interval(15, 100)
    )
    assert result.diff == pytest.approx(0.05)
    assert result.diff_ci == pytest.approx(calc_newcombe_interval(20, 200, 15, 100))
    assert result.diff_ci[0] < 0.05 < result.diff_ci[1]
    assert result.p_value == pytest.approx(chi2_contingency([[20, 180], [15, 85]], correction=False).pvalue)
    everything = evaluate_ab_folder(tmp_path)  # without the window the late purchase counts
    assert everything.table.loc["champion", CONVERTERS] == 21


def test_user_counts_in_the_variant_of_their_first_event(tmp_path: Path) -> None:
    _write_log(tmp_path, {"a": ("champion", False), "b": ("challenger", True)})
    later = validate_feedback_events(  # share changed mid-test: "a" is now served by the challenger
        [{"user_id": "a", "item_id": "i1", "event_type": "purchase", "ts": "2026-11-03T10:00:00",
          "quantity": 1, "price": 3.0, "order_id": "o-a"}],
        now=DAY,
    )  # fmt: skip
    append_feedback_events(later.assign(**{VARIANT: "challenger"}), tmp_path, received_at=DAY)
    result = evaluate_ab(load_feedback(tmp_path).events)
    assert result.table.loc["champion", [VISITORS, CONVERTERS]].tolist() == [1, 1]
    assert result.table.loc["challenger", [VISITORS, CONVERTERS]].tolist() == [1, 1]
    assert result.info["users_in_both"] == 1


def test_empty_variant_is_reported_not_a_crash(tmp_path: Path) -> None:
    _write_log(tmp_path, {f"c{i}": ("champion", i < 3) for i in range(10)})
    result = evaluate_ab_folder(tmp_path)
    assert result.empty_variants() == ["challenger"]
    assert math.isnan(result.diff) and math.isnan(result.p_value)
    assert math.isnan(result.table.loc["challenger", CONVERSION_RATE])
    assert result.table.loc["champion", CONVERSION_RATE] == pytest.approx(0.3)


@pytest.mark.slow
def test_cli_prints_the_table_and_logs_an_mlflow_run(tmp_path: Path) -> None:
    folder = tmp_path / "feedback"
    _write_log(
        folder,
        {f"c{i}": ("champion", i < 4) for i in range(40)}
        | {f"t{i}": ("challenger", i < 8) for i in range(40)},
    )
    with folder.joinpath("events-20261102.jsonl").open("a") as fh:
        fh.write('{"user_id": "torn')
    home = tmp_path / "home"
    result = CliRunner().invoke(
        app,
        ["evaluate", "ab", "--data", str(folder), "--since", "2026-11-01", "--until", "2026-11-03"],
        env={"REBUY_HOME": str(home), "MLFLOW_TRACKING_URI": "", "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "champion" in result.output and "challenger" in result.output
    assert "10.0%" in result.output and "20.0%" in result.output  # 4/40 and 8/40
    assert "1 line(s) set aside" in result.output
    client = RegistrySettings.from_env({"REBUY_HOME": str(home)}).client()
    runs = client.search_runs(
        experiment_ids=[client.get_experiment_by_name("rebuy").experiment_id],
        filter_string="tags.`rebuy.task` = 'evaluate-ab'",
    )
    assert len(runs) == 1 and runs[0].data.metrics["challenger_visitors"] == 40
    assert runs[0].data.metrics["conversion_rate_diff"] == pytest.approx(0.1)
    bad = CliRunner().invoke(
        app, ["evaluate", "ab", "--data", str(tmp_path / "nowhere")], env={"REBUY_HOME": str(home)}
    )
    assert bad.exit_code != 0 and "nowhere" in bad.output
