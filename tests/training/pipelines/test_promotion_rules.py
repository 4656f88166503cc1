"""The promotion rule of `rebuy retrain` (`training.pipelines.promotion`) on hand-written figures (no training)."""

from __future__ import annotations

import pytest

from features.errors import InvalidInputError
from training.pipelines.promotion import PromotionRule, decide, lower_is_better

RULE = PromotionRule(
    model="lightgbm",
    primary="roc_auc",
    margin=0.005,
    baselines=("recency", "paretonbd"),
    guards={"log_loss": 0.01, "ece": 0.02},
)
BASELINES = {"recency.roc_auc": 0.70, "paretonbd.roc_auc": 0.80}


def figures(auc: float, log_loss: float = 0.40, ece: float = 0.02) -> dict[str, float]:
    return {"lightgbm.roc_auc": auc, "lightgbm.log_loss": log_loss, "lightgbm.ece": ece, **BASELINES}


def run(challenger: dict[str, float], champion: dict[str, float] | None, **kwargs: bool | str) -> str:
    return decide(
        "repurchase",
        RULE,
        challenger=challenger,
        champion=champion,
        challenger_version="2",
        champion_version="1" if champion is not None else None,
        champion_source="test",
        **kwargs,
    ).outcome


def test_challenger_better_by_more_than_the_margin_is_promoted() -> None:
    assert run(figures(0.86), figures(0.85)) == "promoted"  # +0.010 > 0.005


def test_gain_within_the_margin_keeps_the_champion() -> None:
    decision = decide(
        "repurchase",
        RULE,
        challenger=figures(0.854),
        champion=figures(0.85),
        challenger_version="2",
        champion_version="1",
        champion_source="test",
    )
    assert decision.outcome == "kept" and not decision.promoted
    assert "+0.0040 is not above the margin 0.005" in decision.reasons[0]


def test_worse_challenger_is_kept() -> None:
    assert run(figures(0.80), figures(0.85)) == "kept"


def test_a_regressing_guard_blocks_promotion_and_is_named() -> None:
    decision = decide(
        "repurchase",
        RULE,
        challenger=figures(0.87, log_loss=0.42),  # log loss +0.02 > tolerance 0.01 (lower is better)
        champion=figures(0.85, log_loss=0.40),
        challenger_version="2",
        champion_version="1",
        champion_source="test",
    )
    assert decision.outcome == "kept"
    assert [g.metric for g in decision.guards if not g.ok] == ["log_loss"]
    assert any("guard log_loss regresses" in r for r in decision.reasons)


def test_an_improving_lower_is_better_guard_passes() -> None:
    assert run(figures(0.87, log_loss=0.30, ece=0.001), figures(0.85)) == "promoted"


def test_challenger_must_beat_the_best_baseline() -> None:
    # better than the champion by far, but not better than Pareto/NBD (0.80)
    assert run(figures(0.79), figures(0.60)) == "kept"


def test_first_version_becomes_champion() -> None:
    assert run(figures(0.75), None) == "first_champion"


def test_same_recipe_on_newer_data_is_a_refresh_only_when_enabled() -> None:
    same = figures(0.85)
    assert run(same, same, same_recipe=True, newer_data=True) == "refresh"
    assert run(same, same, same_recipe=True, newer_data=False) == "kept"
    assert run(same, same, same_recipe=True, newer_data=True, refresh_same_recipe=False) == "kept"


def test_refresh_still_needs_the_guards() -> None:
    champion = figures(0.85, ece=0.01)
    challenger = figures(0.85, ece=0.05)  # same config, newer data, but calibration broke
    assert run(challenger, champion, same_recipe=True, newer_data=True) == "kept"


def test_missing_metric_names_the_key() -> None:
    with pytest.raises(InvalidInputError, match=r"lightgbm\.roc_auc"):
        run({"recency.roc_auc": 0.7}, None)


def test_metric_directions() -> None:
    assert lower_is_better("log_loss") and lower_is_better("timing.lightgbm_hazard.mae_days")
    assert not lower_is_better("ndcg_at_10") and not lower_is_better("lightgbm.roc_auc")


def test_a_skipped_evaluation_makes_a_first_champion_but_never_replaces_one() -> None:
    why = "window [2025-03-01, 2025-04-01) not held out: not enough history"
    assert run({}, None, skipped=why) == "first_champion"  # no figures at all: still not an error
    assert run({}, figures(0.85), skipped=why) == "kept"
    decision = decide(
        "repurchase",
        RULE,
        challenger={},
        champion=figures(0.85),
        challenger_version="2",
        champion_version="1",
        champion_source="test",
        skipped=why,
    )
    assert why in decision.reasons[0] and "champion stays" in decision.reasons[1]
