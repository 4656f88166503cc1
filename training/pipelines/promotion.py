"""When a challenger replaces a champion: the promotion rule, its config and the decision.

`decide` applies a `PromotionRule` to the figures of the challenger and of the champion (both
computed on the same held-out window) and returns a `Decision` naming the outcome and the
reasons. Promote when the challenger beats the champion by the margin on the primary metric,
beats every listed baseline, and no guard metric regresses by more than its tolerance; with
``refresh_same_recipe`` a challenger with the champion's config trained on newer data replaces
it (a refresh), guards still applying. The first version of a model becomes its champion.
Metric directions: `LOWER_IS_BETTER` names the metrics where smaller is better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.errors import InvalidInputError
from training.registry import RECOMMENDER_MODEL, REPURCHASE_MODEL, TIMING_MODEL

RECOMMENDER = "recommender"
REPURCHASE = "repurchase"
TIMING = "timing"
KINDS: tuple[str, ...] = (RECOMMENDER, REPURCHASE, TIMING)
"""The model kinds `rebuy retrain` trains and decides on, in that order."""
MODEL_NAME_BY_KIND: dict[str, str] = {
    RECOMMENDER: RECOMMENDER_MODEL,
    REPURCHASE: REPURCHASE_MODEL,
    TIMING: TIMING_MODEL,
}
"""Model kind -> registered model name (the names themselves live in `training.registry`)."""
LOWER_IS_BETTER: tuple[str, ...] = (
    "log_loss",
    "brier",
    "ece",
    "mae_days",
    "mae_purchases",
    "mae_spend",
    "too_late_rate",
)
"""Metric names (last part of a key) where smaller is better; every other metric: larger is better."""

Outcome = Literal["first_champion", "promoted", "refresh", "kept"]


def lower_is_better(metric: str) -> bool:
    """True when smaller values of `metric` (``log_loss`` or ``lightgbm.log_loss``) are better."""
    return metric.rsplit(".", 1)[-1] in LOWER_IS_BETTER


class PromotionRule(BaseModel):
    """When a challenger replaces the champion of one registered model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description='metric key prefix of the trained model ("" when its keys are plain)')
    primary: str
    margin: float = Field(ge=0.0, description="absolute improvement the primary metric needs")
    baselines: tuple[str, ...] = ()
    guards: dict[str, float] = Field(default_factory=dict, description="metric -> tolerated regression")

    def key(self, metric: str, *, model: str | None = None) -> str:
        """The logged key of `metric` for `model` (default: the rule's model), e.g. ``lightgbm.roc_auc``."""
        prefix = self.model if model is None else model
        return f"{prefix}.{metric}" if prefix else metric

    @staticmethod
    def gain(metric: str, new: float, old: float) -> float:
        """How much better `new` is than `old` (positive = better), whatever the metric's direction."""
        return old - new if lower_is_better(metric) else new - old


class PromotionConfig(BaseModel):
    """One `PromotionRule` per model kind (the ``[promotion.*]`` tables of ``retrain.toml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recommender: PromotionRule
    repurchase: PromotionRule
    timing: PromotionRule

    def rule(self, kind: str) -> PromotionRule:
        """The rule of model kind `kind` (one of `KINDS`)."""
        return getattr(self, kind)


@dataclass(frozen=True)
class GuardCheck:
    """One guard metric of a decision: both sides' values, the tolerance and whether it held."""

    metric: str
    challenger: float
    champion: float
    tolerance: float
    ok: bool


@dataclass(frozen=True)
class Decision:
    """The promotion decision for one registered model, with the figures behind it."""

    kind: str
    model_name: str
    challenger_version: str
    champion_version: str | None
    outcome: Outcome
    primary: str
    challenger_value: float
    champion_value: float | None
    margin: float
    best_baseline: str | None
    best_baseline_value: float | None
    guards: tuple[GuardCheck, ...]
    champion_source: str
    reasons: tuple[str, ...]

    @property
    def promoted(self) -> bool:
        """True unless the champion is kept (first champion, promoted or refresh)."""
        return self.outcome != "kept"

    def to_dict(self) -> dict[str, Any]:
        """Every field plus ``promoted``, as plain data (for ``decision.json``)."""
        out = asdict(self)
        out["promoted"] = self.promoted
        return out


def decide(
    kind: str,
    rule: PromotionRule,
    *,
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    challenger_version: str,
    champion_version: str | None,
    champion_source: str,
    same_recipe: bool = False,
    newer_data: bool = False,
    refresh_same_recipe: bool = True,
    skipped: str | None = None,
) -> Decision:
    """Apply `rule` to the figures of both sides (computed on the same window).

    When the challenger's evaluation was `skipped` (the history could not hold a window out; the
    reason is given), there are no figures to compare: the first version becomes champion, and an
    existing champion is kept.

    Parameters
    ----------
    challenger, champion
        Metric dicts with the keys `train_recommender` / `train_repurchase` log. `champion` None
        means there is no champion yet (the challenger becomes the first one).
    same_recipe, newer_data
        The challenger has the champion's config / was trained on data up to a later cut-off.

    Raises
    ------
    InvalidInputError
        A metric the rule names is missing from the challenger's figures.
    """
    primary_key = rule.key(rule.primary)
    if skipped is not None:
        return Decision(
            kind=kind,
            model_name=MODEL_NAME_BY_KIND[kind],
            challenger_version=challenger_version,
            champion_version=champion_version,
            primary=rule.primary,
            challenger_value=math.nan,
            champion_value=None,
            margin=rule.margin,
            best_baseline=None,
            best_baseline_value=None,
            champion_source=champion_source,
            outcome="first_champion" if champion is None else "kept",
            guards=(),
            reasons=(
                f"evaluation skipped ({skipped})",
                "no champion yet: the first trained version becomes champion"
                if champion is None
                else "no figures to compare with the champion: the champion stays",
            ),
        )
    if primary_key not in challenger:
        raise InvalidInputError(
            f"promotion.{kind}: metric {primary_key!r} is not among the figures of the run "
            f"(known: {', '.join(sorted(challenger)[:40])})"
        )
    value = challenger[primary_key]
    reasons: list[str] = []
    baseline_name, baseline_value = None, None
    beats_baselines = True
    for name in rule.baselines:
        key = rule.key(rule.primary, model=name)
        if key not in challenger:
            raise InvalidInputError(f"promotion.{kind}: baseline metric {key!r} is not among the figures")
        other = challenger[key]
        if baseline_value is None or PromotionRule.gain(rule.primary, other, baseline_value) > 0:
            baseline_name, baseline_value = name, other
    if baseline_value is not None and not PromotionRule.gain(rule.primary, value, baseline_value) > 0:
        beats_baselines = False
        reasons.append(
            f"does not beat the best baseline {baseline_name} on {rule.primary} "
            f"({value:.4f} vs {baseline_value:.4f})"
        )

    base = {
        "kind": kind,
        "model_name": MODEL_NAME_BY_KIND[kind],
        "challenger_version": challenger_version,
        "champion_version": champion_version,
        "primary": rule.primary,
        "challenger_value": value,
        "margin": rule.margin,
        "best_baseline": baseline_name,
        "best_baseline_value": baseline_value,
        "champion_source": champion_source,
    }
    if champion is None:
        reasons.insert(0, "no champion yet: the first trained version becomes champion")
        return Decision(
            **base, outcome="first_champion", champion_value=None, guards=(), reasons=tuple(reasons)
        )

    champ_value = champion.get(primary_key, math.nan)
    gain = PromotionRule.gain(rule.primary, value, champ_value)
    guards = []
    for metric, tolerance in rule.guards.items():
        key = rule.key(metric)
        if key not in challenger or key not in champion:
            raise InvalidInputError(f"promotion.{kind}.guards: metric {key!r} is not among the figures")
        drop = -PromotionRule.gain(metric, challenger[key], champion[key])
        guards.append(GuardCheck(metric, challenger[key], champion[key], tolerance, ok=drop <= tolerance))
    failed = [g for g in guards if not g.ok]
    for g in failed:
        reasons.append(
            f"guard {g.metric} regresses: {g.challenger:.4f} vs champion {g.champion:.4f} "
            f"(tolerance {g.tolerance})"
        )
    better = gain > rule.margin
    outcome: Outcome = "kept"
    if math.isnan(champ_value):
        reasons.insert(0, f"the champion has no {primary_key} figure: not comparable")
    else:
        verdict = "above" if better else "not above"
        reasons.insert(
            0,
            f"{rule.primary} {value:.4f} vs champion {champ_value:.4f}: "
            f"{gain:+.4f} is {verdict} the margin {rule.margin}",
        )
        if better and beats_baselines and not failed:
            outcome = "promoted"
        elif same_recipe and newer_data and refresh_same_recipe and beats_baselines and not failed:
            outcome = "refresh"
            reasons.insert(1, "same config as the champion, trained on newer data: refresh")
        elif same_recipe and not newer_data:
            reasons.insert(1, "same config and same data as the champion")
    return Decision(
        **base,
        outcome=outcome,
        champion_value=champ_value,
        guards=tuple(guards),
        reasons=tuple(reasons),
    )


__all__ = [
    "KINDS",
    "LOWER_IS_BETTER",
    "MODEL_NAME_BY_KIND",
    "RECOMMENDER",
    "REPURCHASE",
    "TIMING",
    "Decision",
    "GuardCheck",
    "Outcome",
    "PromotionConfig",
    "PromotionRule",
    "decide",
    "lower_is_better",
]
