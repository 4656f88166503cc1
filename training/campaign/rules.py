"""Placing candidate messages under the campaign rules: caps, quiet hours, cool-down, budgets, ladders.

`schedule` takes every message a plan would like to send (`CANDIDATE_COLUMNS`) and places them
in priority order (kind priority, then expected hit): each goes out on the first day from its
wanted day (up to `PlanConfig.max_delay_days` later) where the user has had fewer than
``max_per_day`` messages that day and fewer than ``weekly_cap`` in every 7-day window holding
the day, the send time is past the cool-down after the user's last purchase, and the day's
message (and, for coupons, coupon) budget is not spent. A ladder (``chain`` >= 0) is placed
step by step: step ``i`` waits at least its ``wait_days`` after step ``i - 1`` and carries the
condition ``no_order_after:<send time of step i - 1>``; a step that cannot be placed drops the
rest of its ladder. Messages that find no day are left out (counted in the log).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import pandas as pd

from features.schema import CATEGORY, USER_ID
from training.campaign.config import COUPON_KINDS, PlanConfig

logger = logging.getLogger(__name__)

DAY_INDEX = "day"
KIND = "kind"
ITEMS = "items"
ACTION = "action"
CONDITION = "condition"
REASON = "reason"
EXPECTED_HIT = "expected_hit"
SEND_AT = "send_at"
CHAIN = "chain"
STEP = "step"
WAIT_DAYS = "wait_days"
CONDITION_PREFIX = "no_order_after:"

CANDIDATE_COLUMNS: tuple[str, ...] = (
    USER_ID,
    DAY_INDEX,
    KIND,
    CATEGORY,
    ITEMS,
    ACTION,
    CONDITION,
    REASON,
    EXPECTED_HIT,
    CHAIN,
    STEP,
    WAIT_DAYS,
)
"""Columns of the candidates `schedule` reads: ``day`` is the wanted day (0 = the plan's first),
``condition`` empty or `CONDITION_PREFIX` + ISO time, ``chain`` -1 or a ladder id shared by its
steps, ``step`` the rung (0 first), ``wait_days`` the minimum wait after the previous rung."""


def send_hours(active_hours: pd.Series, config: PlanConfig, *, as_of: pd.Timestamp) -> pd.Series:
    """Local send hour per user: the user's active hour (UTC) moved into the quiet-hours window.

    Returns
    -------
    pd.Series
        int64 hour in ``[quiet_start_hour, quiet_end_hour)`` of `PlanConfig.time_zone`, index of
        `active_hours`.
    """
    offset = pd.Timestamp(as_of).tz_localize("UTC").tz_convert(config.time_zone).utcoffset()
    shift = int(offset.total_seconds() // 3600) if offset is not None else 0
    local = (active_hours.to_numpy("int64") + shift) % 24
    return pd.Series(
        np.clip(local, config.quiet_start_hour, config.quiet_end_hour - 1),
        index=active_hours.index,
        dtype="int64",
    )


def send_time(as_of: pd.Timestamp, day: int, hour: int, config: PlanConfig) -> pd.Timestamp:
    """Naive UTC time of local `hour` on plan day `day` (the plan starts on `as_of`'s date)."""
    local = pd.Timestamp(as_of.normalize() + pd.Timedelta(days=day, hours=hour)).tz_localize(
        config.time_zone, nonexistent="shift_forward", ambiguous=False
    )
    return local.tz_convert("UTC").tz_localize(None)


def schedule(
    candidates: pd.DataFrame,
    *,
    config: PlanConfig,
    as_of: pd.Timestamp,
    days: int,
    hours: pd.Series,
    cooldown_until: pd.Series,
    priority: np.ndarray | None = None,
    sent: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Place `candidates` under the rules of `config` (module docstring).

    Parameters
    ----------
    candidates
        `CANDIDATE_COLUMNS`.
    as_of
        Midnight of the plan's first day (naive UTC).
    days
        Days planned: day indices ``0 .. days - 1``.
    hours
        Local send hour per user (`send_hours`); users missing get ``quiet_start_hour``.
    cooldown_until
        Per user, the earliest send time (naive UTC) after the cool-down of the last purchase.
    priority
        Order of placement, higher first (default: `PlanConfig.priority` of the kind, then
        ``expected_hit``).
    sent
        Messages already sent before the first day (``user_id``, ``day`` < 0): they count
        against the caps of the first days.

    Returns
    -------
    pd.DataFrame
        The placed messages: `CANDIDATE_COLUMNS` with ``day`` the day sent and the ladder
        conditions filled, plus ``send_at`` (naive UTC); ordered by ``send_at``, ``user_id``.
    """
    if candidates.empty:
        return candidates.assign(**{SEND_AT: pd.Series(dtype="datetime64[ns]")}).reset_index(drop=True)
    cand = candidates.reset_index(drop=True)
    if priority is None:
        priority = cand[KIND].map(config.priority).fillna(0.0).to_numpy("float64")
    order = np.lexsort(
        (cand[DAY_INDEX].to_numpy(), cand[USER_ID].to_numpy(str), -cand[EXPECTED_HIT].to_numpy(), -priority)
    )
    followers: dict[int, list[int]] = defaultdict(list)
    chain = cand[CHAIN].to_numpy("int64")
    step = cand[STEP].to_numpy("int64")
    for i in np.flatnonzero(chain >= 0):
        if step[i] > 0:
            followers[int(chain[i])].append(int(i))
    for rungs in followers.values():
        rungs.sort(key=lambda i: step[i])

    per_user: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    if sent is not None:
        for user, day in zip(sent[USER_ID].to_numpy(object), sent[DAY_INDEX].to_numpy("int64"), strict=True):
            per_user[user][int(day)] += 1
    sent_today = np.zeros(days, dtype=np.int64)
    coupons_today = np.zeros(days, dtype=np.int64)
    users = cand[USER_ID].to_numpy(object)
    kinds = cand[KIND].to_numpy(object)
    wanted = cand[DAY_INDEX].to_numpy("int64")
    waits = cand[WAIT_DAYS].to_numpy("int64")
    hour_of = hours.to_dict()
    cool = cooldown_until.to_dict()
    placed_day = np.full(len(cand), -1, dtype=np.int64)
    placed_at: dict[int, pd.Timestamp] = {}
    conditions = cand[CONDITION].to_numpy(object).copy()

    def fits(user: str, day: int, coupon: bool, at: pd.Timestamp) -> bool:
        counts = per_user[user]
        if counts.get(day, 0) >= config.max_per_day or sent_today[day] >= config.daily_message_budget:
            return False
        if coupon and coupons_today[day] >= config.daily_coupon_budget:
            return False
        limit = cool.get(user)
        if limit is not None and not pd.isna(limit) and at < limit:
            return False
        near = [counts.get(d, 0) for d in range(day - 6, day + 7)]  # every 7-day window holding `day`
        window = sum(near[:7])
        for i in range(7):
            if window + 1 > config.weekly_cap:
                return False
            if i < 6:
                window += near[i + 7] - near[i]
        return True

    times: dict[tuple[int, int], pd.Timestamp] = {}

    def at_time(day: int, hour: int) -> pd.Timestamp:
        if (day, hour) not in times:
            times[(day, hour)] = send_time(as_of, day, hour, config)
        return times[(day, hour)]

    def place(i: int, earliest: int) -> bool:
        user = users[i]
        hour = int(hour_of.get(user, config.quiet_start_hour))
        coupon = kinds[i] in COUPON_KINDS
        for day in range(max(earliest, 0), min(earliest + config.max_delay_days, days - 1) + 1):
            at = at_time(day, hour)
            if fits(user, day, coupon, at):
                per_user[user][day] += 1
                sent_today[day] += 1
                coupons_today[day] += coupon
                placed_day[i] = day
                placed_at[i] = at
                return True
        return False

    for i in order:
        if chain[i] >= 0 and step[i] > 0:
            continue  # placed after its ladder's first rung
        if not place(int(i), int(wanted[i])) or chain[i] < 0:
            continue
        prev = int(i)
        for j in followers.get(int(chain[i]), []):
            if not place(j, int(placed_day[prev]) + int(waits[j])):
                break
            conditions[j] = CONDITION_PREFIX + placed_at[prev].isoformat()
            prev = j
    keep = placed_day >= 0
    out = cand.loc[keep].copy()
    out[DAY_INDEX] = placed_day[keep]
    out[CONDITION] = conditions[keep]
    out[SEND_AT] = pd.Series(
        [placed_at[i] for i in np.flatnonzero(keep)], index=out.index, dtype="datetime64[ns]"
    )
    logger.info("scheduled %d of %d candidate messages over %d days", int(keep.sum()), len(cand), days)
    return out.sort_values([SEND_AT, USER_ID], kind="stable").reset_index(drop=True)


def condition_failed(plan: pd.DataFrame, purchases: pd.DataFrame) -> np.ndarray:
    """Per plan row: its ``no_order_after:T`` condition failed (the user bought in ``(T, send_at)``).

    `purchases` needs ``user_id`` and ``ts``; rows without a condition never fail.
    """
    cond = plan[CONDITION].fillna("").astype(str)
    has = cond.str.startswith(CONDITION_PREFIX).to_numpy()
    failed = np.zeros(len(plan), dtype=bool)
    if not has.any() or purchases.empty:
        return failed
    after = pd.to_datetime(cond[has].str.slice(len(CONDITION_PREFIX))).to_numpy("datetime64[ns]")
    rows = pd.DataFrame(
        {USER_ID: plan[USER_ID].to_numpy(object)[has], "after": after, "until": plan[SEND_AT].to_numpy()[has]}
    )
    rows["row"] = np.flatnonzero(has)
    joined = rows.merge(purchases[[USER_ID, "ts"]], on=USER_ID, how="inner")
    bad = joined.loc[(joined["ts"] > joined["after"]) & (joined["ts"] < joined["until"]), "row"].unique()
    failed[bad] = True
    return failed


__all__ = ["CANDIDATE_COLUMNS", "condition_failed", "schedule", "send_hours", "send_time"]
