"""Generated sample store: a realistic pet-supplies shop, the embedded default for demos and tests.

`generate_store` simulates households (cat, dog or both, 1-3 pets) that sign up over the window,
and returns the three contract tables (`features.schema.StoreTables`). The simulation is fully
vectorised with numpy (loops run over categories, promotion days and replenishment rounds, never
over users or events) and is deterministic for a seed.

What drives the data:

- Catalogue: a few hundred items in 15 categories per pet type, several brands in three price
  tiers, pack sizes. Consumables (dry and wet food, litter, flea/deworming treatments) are
  re-bought on a cycle that depends on the category, the pack size, the number of pets and the
  household; treats, toys, grooming and accessories are exploratory purchases of new items.
- Households: price tier, number of pets, engagement, preferred hour of day (events scatter
  around it), a share of need bought elsewhere (leakage), brand loyalty (the same item is
  re-bought, with an occasional switch within the category), sensitivity to promotions, and
  "planners" who consolidate their orders on a weekly shopping day.
- Lifecycle: some users sign up and never buy; buyers churn, most often right after the first
  order or within about a month of it, established customers rarely. Sessions taper after churn.
- Promotions (mid-year and 11.11 style by default): discounted prices, stock-up of items due
  within the next weeks, extra exploratory purchases and browsing.
- Events per session: a login, views, favourites (some never bought), carts (some abandoned)
  and purchases sharing one order id.

The defaults are calibrated against real logs so that models get no easy ride: among customers,
a third to a half never buy on a second day (CDNOW 51 %, UCI Online Retail 36 %), and about half
of a returning customer's next-month items are repeats.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from features import schema as s

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400

# --- catalogue vocabulary -----------------------------------------------------------------------
CAT = "cat"
DOG = "dog"
PET_TYPES: tuple[str, ...] = (CAT, DOG)

CAT_DRY_FOOD = "cat_dry_food"
CAT_WET_FOOD = "cat_wet_food"
CAT_LITTER = "cat_litter"
CAT_HEALTH = "cat_health"
CAT_TREATS = "cat_treats"
CAT_TOYS = "cat_toys"
CAT_GROOMING = "cat_grooming"
CAT_ACCESSORIES = "cat_accessories"
DOG_DRY_FOOD = "dog_dry_food"
DOG_WET_FOOD = "dog_wet_food"
DOG_HEALTH = "dog_health"
DOG_TREATS = "dog_treats"
DOG_TOYS = "dog_toys"
DOG_GROOMING = "dog_grooming"
DOG_ACCESSORIES = "dog_accessories"

INTERESTS: tuple[str, ...] = ("food", "treats", "toys", "health", "grooming")
CHANNELS: tuple[str, ...] = ("organic", "search_ads", "social", "referral", "email")

_HOUSEHOLD_CAT, _HOUSEHOLD_DOG, _HOUSEHOLD_BOTH = 0, 1, 2
_TIER_MULTIPLIER = np.array([0.7, 1.0, 1.6])
# affinity[household tier, item tier]: budget households mostly buy budget items, and so on
_TIER_AFFINITY = np.array([[1.0, 0.35, 0.08], [0.4, 1.0, 0.35], [0.12, 0.45, 1.0]])
_PACK_SIZES = np.array([0.5, 1.0, 2.0])
# affinity[pets - 1, pack]: multi-pet households prefer large packs
_PACK_AFFINITY = np.array([[1.5, 1.0, 0.5], [0.6, 1.0, 1.4], [0.3, 0.8, 2.0]])
_EVENT_CODE = {name: code for code, name in enumerate(s.EVENT_TYPES)}


@dataclass(frozen=True)
class _CategorySpec:
    """One catalogue category. ``cycle_days`` is None for exploratory categories."""

    name: str
    pet_type: str
    group: str  # tag shared across pet types: food, litter, health, treats, toys, grooming, ...
    n_items: int
    base_price: float  # price of a standard pack in the middle tier
    tag_options: tuple[str, ...]
    interest: str | None = None  # interest tag that makes a household browse/buy it more
    subtype: str | None = None  # extra tag (dry, wet)
    cycle_days: float | None = None  # one standard pack for one pet lasts this long
    adoption: float = 0.0  # probability a household of the pet type buys the category here
    first_order: float = 0.0  # probability it is in the first order when adopted at the start
    switch: float = 0.0  # probability of switching item at a re-purchase
    pets_exponent: float = 0.8  # consumption grows like pets ** exponent
    base_qty: tuple[float, ...] = (1.0,)  # probabilities of buying 1, 2, ... units per purchase
    has_packs: bool = False
    explore_weight: float = 0.0  # weight among exploratory purchases
    browse_weight: float = 1.0


_FOOD_CAT = ("grain-free", "kitten", "senior", "indoor", "sterilised", "salmon", "chicken")
_FOOD_DOG = ("grain-free", "puppy", "senior", "large-breed", "small-breed", "lamb", "chicken")
CATEGORIES: tuple[_CategorySpec, ...] = (
    _CategorySpec(CAT_DRY_FOOD, CAT, "food", 22, 24.0, _FOOD_CAT, "food", "dry", 40.0, 0.85, 0.7,
                  0.06, base_qty=(0.8, 0.2), has_packs=True, browse_weight=1.6),
    _CategorySpec(CAT_WET_FOOD, CAT, "food", 22, 14.0, ("pate", "chunks", "tuna", "chicken", "kitten"),
                  "food", "wet", 12.0, 0.5, 0.4, 0.3, base_qty=(0.5, 0.3, 0.2), browse_weight=1.4),
    _CategorySpec(CAT_LITTER, CAT, "litter", 14, 11.0, ("clumping", "clay", "tofu", "silica", "unscented"),
                  None, None, 14.0, 0.93, 0.85, 0.06, base_qty=(0.8, 0.2), has_packs=True, browse_weight=0.7),
    _CategorySpec(CAT_HEALTH, CAT, "health", 8, 19.0, ("flea", "tick", "deworming", "spot-on", "tablet"),
                  "health", None, 90.0, 0.45, 0.25, 0.1, pets_exponent=1.0, browse_weight=0.6),
    _CategorySpec(CAT_TREATS, CAT, "treats", 18, 4.5, ("crunchy", "lickable", "dental", "chicken", "tuna"),
                  "treats", explore_weight=1.5),
    _CategorySpec(CAT_TOYS, CAT, "toys", 26, 7.0, ("wand", "ball", "catnip", "interactive", "mouse"),
                  "toys", explore_weight=1.0, browse_weight=1.3),
    _CategorySpec(CAT_GROOMING, CAT, "grooming", 10, 11.0, ("brush", "shampoo", "nail-clipper", "deshedding"),
                  "grooming", explore_weight=0.4, browse_weight=0.6),
    _CategorySpec(CAT_ACCESSORIES, CAT, "accessories", 14, 18.0, ("bowl", "scratcher", "bed", "carrier"),
                  None, explore_weight=0.6, browse_weight=0.9),
    _CategorySpec(DOG_DRY_FOOD, DOG, "food", 24, 32.0, _FOOD_DOG, "food", "dry", 36.0, 0.9, 0.75,
                  0.06, base_qty=(0.85, 0.15), has_packs=True, browse_weight=1.6),
    _CategorySpec(DOG_WET_FOOD, DOG, "food", 16, 16.0, ("chunks", "loaf", "beef", "chicken", "puppy"),
                  "food", "wet", 14.0, 0.3, 0.3, 0.3, base_qty=(0.5, 0.3, 0.2), browse_weight=1.0),
    _CategorySpec(DOG_HEALTH, DOG, "health", 10, 22.0, ("flea", "tick", "deworming", "joint", "tablet"),
                  "health", None, 90.0, 0.5, 0.25, 0.1, pets_exponent=1.0, browse_weight=0.6),
    _CategorySpec(DOG_TREATS, DOG, "treats", 22, 5.5, ("chew", "dental", "jerky", "training", "biscuit"),
                  "treats", explore_weight=1.5),
    _CategorySpec(DOG_TOYS, DOG, "toys", 26, 9.0, ("rope", "ball", "squeaky", "chew", "plush"),
                  "toys", explore_weight=1.0, browse_weight=1.3),
    _CategorySpec(DOG_GROOMING, DOG, "grooming", 10, 12.0, ("brush", "shampoo", "nail-clipper", "deshedding"),
                  "grooming", explore_weight=0.4, browse_weight=0.6),
    _CategorySpec(DOG_ACCESSORIES, DOG, "accessories", 16, 20.0, ("leash", "collar", "harness", "bed"),
                  None, explore_weight=0.6, browse_weight=0.9),
)  # fmt: skip

_CATEGORY_INDEX: dict[str, int] = {spec.name: i for i, spec in enumerate(CATEGORIES)}

# brand name, price tier (0 budget, 1 mid, 2 premium), product groups it makes
_BRANDS: tuple[tuple[str, int, frozenset[str]], ...] = (
    ("Basics", 0, frozenset({"food", "litter", "health", "treats", "toys", "grooming", "accessories"})),
    ("PawSaver", 0, frozenset({"food", "treats", "litter"})),
    ("ValuePet", 0, frozenset({"toys", "accessories", "grooming", "litter"})),
    ("Nutrivet", 1, frozenset({"food", "treats", "health"})),
    ("HappyTail", 1, frozenset({"toys", "treats", "accessories", "grooming"})),
    ("CleanPaws", 1, frozenset({"litter", "grooming", "health"})),
    ("FarmFresh", 1, frozenset({"food", "treats"})),
    ("WildOrigin", 2, frozenset({"food", "treats"})),
    ("VetPro", 2, frozenset({"health", "grooming"})),
    ("LuxPet", 2, frozenset({"accessories", "toys", "litter"})),
    ("PureNature", 2, frozenset({"food", "litter", "treats"})),
)
_TIER_TAGS = ("value", "", "premium")


class SampleConfig(BaseModel):
    """Size, seed and behaviour of the generated sample store.

    The defaults give a realistic store of about 1.2 million events for 20,000 users over a year;
    the behavioural knobs are calibrated (see the module docstring) and rarely need changing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: int = Field(20_000, ge=1, description="Number of users (households) signing up.")
    days: int = Field(365, ge=30, description="Length of the window [start, start + days).")
    seed: int = Field(7, description="Seed of the numpy Generator; same seed, same store.")
    start: datetime.date = Field(datetime.date(2025, 1, 1), description="First day of the window.")
    buyer_share: float = Field(0.72, gt=0, le=1, description="Share of sign-ups who ever buy.")
    one_shot_share: float = Field(
        0.34, ge=0, le=1, description="Share of buyers who churn right after their first order."
    )
    early_churn_share: float = Field(
        0.2, ge=0, le=1, description="Share of buyers who churn within about 40 days of the first order."
    )
    early_churn_days: float = Field(40.0, gt=0, description="Longest life of an early churner, days.")
    loyal_lifetime_days: float = Field(
        600.0, gt=0, description="Mean remaining life (exponential) of the other buyers, days."
    )
    leakage: float = Field(0.2, ge=0, lt=1, description="Mean share of replenishment needs bought elsewhere.")
    explore_per_month: float = Field(
        1.4, ge=0, description="Exploratory orders (treats, toys, ...) per active month, average user."
    )
    addon_rate: float = Field(0.7, ge=0, description="Mean exploratory items added to a replenishment order.")
    browse_per_week: float = Field(
        0.45, ge=0, description="Browsing sessions per week of an average active user."
    )
    planner_share: float = Field(
        0.35, ge=0, le=1, description="Share of households consolidating orders on a weekly shopping day."
    )
    promo_days: tuple[tuple[int, int], ...] = Field(
        ((6, 18), (11, 11)), description="(month, day) of the promotion days, every year of the window."
    )
    promo_discount: tuple[float, float] = Field(
        (0.1, 0.3), description="Range of the price discount on promotion days."
    )
    stockup_days: float = Field(
        14.0, ge=0, description="Items due within this many days after a promotion are bought on it."
    )


def start_for_end(end: datetime.date, *, days: int) -> datetime.date:
    """First day of a window of `days` days whose last day is `end` (`SampleConfig.start`).

    The window is ``[start, start + days)``, so its last day is ``start + days - 1``: a store
    generated with this start has its last events on `end` (``rebuy sample --end``).

    Parameters
    ----------
    end
        Last day of the generated store.
    days
        Length of the window in days (`SampleConfig.days`).

    Returns
    -------
    datetime.date
        ``end - (days - 1)`` days.

    Raises
    ------
    ValueError
        If `days` is below 1.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    return end - datetime.timedelta(days=days - 1)


@dataclass(frozen=True)
class _Sampler:
    """Vectorised sampling from many discrete distributions at once, one per group.

    ``cdf`` holds, group after group, ``group + cumulative probability`` of the positive-weight
    values, so a uniform draw shifted by the group finds its value with one `searchsorted`.
    """

    cdf: np.ndarray
    values: np.ndarray
    n_groups: int

    @classmethod
    def from_weights(cls, weights: np.ndarray) -> _Sampler:
        if (weights.sum(axis=1) <= 0).any():
            raise ValueError("every group of a sampler needs a positive weight")
        rows, cols = np.nonzero(weights > 0)
        cum = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
        vals = cum[rows, cols]
        last = np.r_[rows[1:] != rows[:-1], True]
        vals[last] = 1.0
        return cls(cdf=rows + vals, values=cols, n_groups=weights.shape[0])

    def sample(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        u = groups + rng.random(len(groups))
        pos = np.searchsorted(self.cdf, u, side="right")
        return self.values[np.minimum(pos, len(self.values) - 1)]


@dataclass(frozen=True)
class _Catalog:
    items: pd.DataFrame  # contract items table
    category: np.ndarray  # category index of each item
    tier: np.ndarray
    pack: np.ndarray  # pack size factor (1 = standard)
    price: np.ndarray
    item_by_group: _Sampler  # groups: category * 9 + tier * 3 + (pets - 1); buying
    browse_item: _Sampler  # groups: category; browsing (popularity)


@dataclass(frozen=True)
class _Households:
    n: int
    signup: np.ndarray  # float days since start
    household: np.ndarray  # _HOUSEHOLD_CAT / DOG / BOTH
    pets: np.ndarray  # 1..3
    tier: np.ndarray
    engagement: np.ndarray  # mean 1
    hour: np.ndarray  # preferred hour of day
    interest_mask: np.ndarray  # bit i set: INTERESTS[i] chosen at sign-up
    first: np.ndarray  # day of the first purchase (inf: never buys)
    churn: np.ndarray  # day the user churns (inf: never)
    leak: np.ndarray
    switch: np.ndarray  # multiplier of the category switch probability
    promo_sensitivity: np.ndarray
    planner_offset: np.ndarray  # weekly shopping day offset 0..6, -1 for non-planners
    users: pd.DataFrame  # contract users table


@dataclass(frozen=True)
class _Lines:
    """Purchase lines before they become events."""

    user: np.ndarray
    item: np.ndarray
    day: np.ndarray  # int day index
    qty: np.ndarray

    @staticmethod
    def concat(parts: list[_Lines]) -> _Lines:
        return _Lines(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("user", "item", "day", "qty"))
        )


def generate_store(config: SampleConfig, *, show_progress: bool = False) -> s.StoreTables:
    """Generate the sample pet-supplies store described in the module docstring.

    Parameters
    ----------
    config
        Size (users, days, start), seed and behaviour of the store.
    show_progress
        Show a progress bar over the generation stages.

    Returns
    -------
    StoreTables
        ``events`` (sorted by ``ts``), ``items`` and ``users`` with exactly the contract columns
        and in-memory dtypes of `features.schema`. All timestamps lie in
        ``[start, start + days)``; no event precedes its user's ``signup_ts``; logins have no
        item; purchases have quantity > 0, price >= 0 and an order id (``o`` + 8 digits) shared
        by the items bought in the same session. Ids are ``u`` + 6 digits and ``i`` + 4 digits
        (more digits when there are more users or items).
    """
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    promo = _promo_day_indices(config)
    stages = ("catalogue", "households", "replenishment", "exploration", "sessions", "events", "tables")
    with tqdm(total=len(stages), desc="sample store", unit="stage", disable=not show_progress) as bar:

        def advance(stage: str) -> None:
            bar.set_postfix_str(stage)
            bar.update(1)

        catalog = _make_catalog(rng)
        advance(stages[0])
        hh = _make_households(rng, config, promo)
        advance(stages[1])
        replenish = _replenishment_lines(rng, config, catalog, hh, promo)
        advance(stages[2])
        lines = _add_exploration(rng, config, catalog, hh, promo, replenish)
        advance(stages[3])
        sessions = _browse_sessions(rng, config, hh, promo)
        advance(stages[4])
        raw = _events(rng, config, catalog, hh, lines, sessions)
        advance(stages[5])
        events = _events_frame(raw, config, hh, n_items=len(catalog.items))
        advance(stages[6])
    tables = s.StoreTables(events=events, items=catalog.items, users=hh.users)
    n_purchases = int((events[s.EVENT_TYPE] == s.EventType.PURCHASE).sum())
    logger.info(
        "generated sample store (seed %d): %d users, %d items, %d events (%d purchases) in "
        "[%s, %s) in %.1f s",
        config.seed,
        len(hh.users),
        len(catalog.items),
        len(events),
        n_purchases,
        config.start,
        config.start + datetime.timedelta(days=config.days),
        time.perf_counter() - started,
    )
    return tables


# --- stages -------------------------------------------------------------------------------------


def _promo_day_indices(config: SampleConfig) -> np.ndarray:
    """Day indices of the promotion days inside the window, sorted."""
    end = config.start + datetime.timedelta(days=config.days)
    days = []
    for year in range(config.start.year, end.year + 1):
        for month, day in config.promo_days:
            try:
                d = datetime.date(year, month, day)
            except ValueError:
                continue
            if config.start <= d < end:
                days.append((d - config.start).days)
    return np.array(sorted(days), dtype=np.int64)


def _ids(prefix: str, n: int, *, width: int) -> np.ndarray:
    digits = max(width, len(str(max(n - 1, 0))))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), digits)).astype(object)


def _make_catalog(rng: np.random.Generator) -> _Catalog:
    parts = []
    for ci, spec in enumerate(CATEGORIES):
        n = spec.n_items
        tier = rng.choice(3, size=n, p=[0.4, 0.4, 0.2])
        pack = rng.choice(3, size=n, p=[0.25, 0.5, 0.25]) if spec.has_packs else np.ones(n, dtype=np.int64)
        brands = np.empty(n, dtype=object)
        for t in range(3):
            names = [b for b, bt, groups in _BRANDS if bt == t and spec.group in groups]
            brands[tier == t] = rng.choice(names, size=int((tier == t).sum()))
        price = spec.base_price * _TIER_MULTIPLIER[tier] * _PACK_SIZES[pack] ** 0.85
        price = np.round(price * rng.lognormal(0.0, 0.12, n), 1) - 0.01
        n_attrs = rng.integers(0, 3, size=n)
        tags = []
        for j in range(n):  # per item (a few hundred), not per user or event
            attrs = rng.choice(spec.tag_options, size=n_attrs[j], replace=False).tolist()
            tags.append(
                s.join_tags([spec.pet_type, spec.group, spec.subtype or "", *attrs, _TIER_TAGS[tier[j]]])
            )
        popularity = 1.0 / np.arange(1, n + 1) ** 1.0
        parts.append(
            pd.DataFrame(
                {
                    s.CATEGORY: spec.name,
                    s.PET_TYPE: spec.pet_type,
                    s.BRAND: brands,
                    s.PRICE: np.maximum(price, 0.49),
                    s.TAGS: tags,
                    "_category": ci,
                    "_tier": tier,
                    "_pack": _PACK_SIZES[pack],
                    "_pack_code": pack,
                    "_popularity": rng.permutation(popularity),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame[s.ITEM_ID] = _ids("i", len(frame), width=4)
    category = frame["_category"].to_numpy()
    tier = frame["_tier"].to_numpy()
    popularity = frame["_popularity"].to_numpy()
    pack_code = frame["_pack_code"].to_numpy()

    n_cat, n_items = len(CATEGORIES), len(frame)
    in_cat = category[None, :] == np.arange(n_cat)[:, None]  # [category, item]
    buy = np.zeros((n_cat, 3, 3, n_items))
    for t in range(3):
        for p in range(3):
            buy[:, t, p] = in_cat * popularity * _TIER_AFFINITY[t, tier] * _PACK_AFFINITY[p, pack_code]
    browse = in_cat * popularity
    return _Catalog(
        items=s.conform(frame, s.ITEMS),
        category=category,
        tier=tier,
        pack=frame["_pack"].to_numpy(),
        price=frame[s.PRICE].to_numpy(),
        item_by_group=_Sampler.from_weights(buy.reshape(n_cat * 9, n_items)),
        browse_item=_Sampler.from_weights(browse),
    )


def _make_households(rng: np.random.Generator, config: SampleConfig, promo: np.ndarray) -> _Households:
    n, days = config.users, float(config.days)
    household = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
    pets = rng.choice(3, size=n, p=[0.6, 0.3, 0.1]) + 1
    pets = np.where(household == _HOUSEHOLD_BOTH, np.maximum(pets, 2), pets)
    tier = rng.choice(3, size=n, p=[0.35, 0.45, 0.2])
    channel = rng.choice(len(CHANNELS), size=n, p=[0.35, 0.25, 0.2, 0.1, 0.1])
    engagement = rng.lognormal(0.0, 0.6, n)
    engagement /= engagement.mean()
    # morning, lunch or evening people; each event scatters around the personal hour
    hour = np.array([8.0, 12.5, 20.5])[rng.choice(3, size=n, p=[0.25, 0.25, 0.5])]
    hour = np.mod(hour + rng.normal(0.0, 1.0, n), 24.0)

    # sign-ups over the window, with a bump in the days before each promotion
    signup = rng.random(n) * days
    if promo.size:
        bump = rng.random(n) < 0.12
        near = promo[rng.integers(0, promo.size, n)] - rng.random(n) * 5.0
        signup = np.where(bump & (near >= 0), near, signup)

    # interests chosen at sign-up, consistent with the household
    has_cat = household != _HOUSEHOLD_DOG
    has_dog = household != _HOUSEHOLD_CAT
    p_cat = np.where(has_cat, np.where(has_dog, 0.85, 0.93), 0.03)
    p_dog = np.where(has_dog, np.where(has_cat, 0.85, 0.93), 0.03)
    tag_cat = rng.random(n) < p_cat
    tag_dog = rng.random(n) < p_dog
    p_interest = np.array([0.65, 0.4, 0.4, 0.3, 0.25])
    interest = rng.random((n, len(INTERESTS))) < p_interest
    interest &= (rng.random(n) >= 0.08)[:, None]  # some skip the question
    interest_mask = (interest * (1 << np.arange(len(INTERESTS)))).sum(axis=1)
    tag_code = tag_cat + 2 * tag_dog + 4 * interest_mask
    tag_table = np.array(
        [
            s.join_tags(
                [CAT] * (code & 1)
                + [DOG] * ((code >> 1) & 1)
                + [name for i, name in enumerate(INTERESTS) if (code >> 2) & (1 << i)]
            )
            for code in range(4 << len(INTERESTS))
        ],
        dtype=object,
    )

    # lifecycle: who buys, when first, when they churn
    channel_buy = np.array([1.03, 0.97, 0.8, 1.15, 1.03])[channel]
    buyer = rng.random(n) < np.clip(config.buyer_share * channel_buy, 0.0, 1.0)
    same_session = rng.random(n) < 0.45
    delay = np.where(
        same_session, rng.uniform(2.0, 40.0, n) / 1440.0, rng.exponential(6.0, n) + rng.random(n)
    )
    first = np.where(buyer, signup + delay, np.inf)
    channel_shot = np.array([0.0, 0.02, 0.1, -0.1, 0.0])[channel]
    u = rng.random(n)
    one_shot = u < np.clip(config.one_shot_share + channel_shot, 0.0, 1.0)
    early = ~one_shot & (u < config.one_shot_share + channel_shot + config.early_churn_share)
    life = np.where(
        one_shot,
        rng.uniform(0.0, 2.0, n),
        np.where(
            early,
            rng.uniform(2.0, config.early_churn_days, n),
            rng.exponential(config.loyal_lifetime_days, n),
        ),
    )
    churn = first + life

    signup_sec = np.floor(signup * SECONDS_PER_DAY).astype(np.int64)
    start_ns = pd.Timestamp(config.start).value
    users = pd.DataFrame(
        {
            s.USER_ID: _ids("u", n, width=6),
            s.SIGNUP_TS: (start_ns + signup_sec * 1_000_000_000).astype(s.TS_DTYPE),
            s.INTEREST_TAGS: tag_table[tag_code],
            s.CHANNEL: np.array(CHANNELS, dtype=object)[channel],
        }
    )
    leak_mean = config.leakage
    leak = rng.beta(leak_mean * 10 + 1e-9, (1 - leak_mean) * 10, n) if leak_mean > 0 else np.zeros(n)
    planner = rng.random(n) < config.planner_share
    return _Households(
        n=n,
        signup=signup_sec / SECONDS_PER_DAY,
        household=household,
        pets=pets,
        tier=tier,
        engagement=engagement,
        hour=hour,
        interest_mask=interest_mask,
        first=first,
        churn=churn,
        leak=leak,
        switch=rng.lognormal(0.0, 0.5, n),
        promo_sensitivity=rng.beta(2.0, 2.0, n),
        planner_offset=np.where(planner, rng.integers(0, 7, n), -1),
        users=s.conform(users, s.USERS),
    )


def _has_pet(hh: _Households, pet_type: str) -> np.ndarray:
    other = _HOUSEHOLD_DOG if pet_type == CAT else _HOUSEHOLD_CAT
    return hh.household != other


def _replenishment_lines(
    rng: np.random.Generator, config: SampleConfig, catalog: _Catalog, hh: _Households, promo: np.ndarray
) -> _Lines:
    """Consumables bought on their cycle, one renewal process per (user, category)."""
    days = float(config.days)
    buyer = np.isfinite(hh.first) & (hh.first < days)
    users, cats, starts, q0s = [], [], [], []
    for ci, spec in enumerate(CATEGORIES):
        if spec.cycle_days is None:
            continue
        u = np.flatnonzero(buyer & _has_pet(hh, spec.pet_type) & (rng.random(hh.n) < spec.adoption))
        cycle = spec.cycle_days
        r = rng.random(u.size)
        # in the first order, or stocked elsewhere until a random point of the cycle, or cross-sold later
        start = np.where(
            r < spec.first_order,
            hh.first[u],
            np.where(
                r < 0.85,
                hh.first[u] + rng.random(u.size) * cycle,
                hh.first[u] + rng.exponential(90.0, u.size),
            ),
        )
        if spec.pets_exponent == 1.0:  # per-pet treatments: one unit per pet
            q0 = np.minimum(hh.pets[u], 3)
        else:
            q0 = rng.choice(len(spec.base_qty), size=u.size, p=spec.base_qty) + 1
        users.append(u)
        cats.append(np.full(u.size, ci))
        starts.append(start)
        q0s.append(q0)
    user = np.concatenate(users)
    cat = np.concatenate(cats)
    t = np.concatenate(starts)
    q0 = np.concatenate(q0s)

    # every buyer's first order holds at least one consumable: the earliest-starting one
    missing = np.setdiff1d(np.flatnonzero(buyer), user)
    if missing.size:  # buyers who adopted nothing: their main pet's dry food
        main = np.where(
            hh.household[missing] == _HOUSEHOLD_DOG,
            _CATEGORY_INDEX[DOG_DRY_FOOD],
            _CATEGORY_INDEX[CAT_DRY_FOOD],
        )
        user = np.r_[user, missing]
        cat = np.r_[cat, main]
        t = np.r_[t, hh.first[missing]]
        q0 = np.r_[q0, np.ones(missing.size, dtype=np.int64)]
    order = np.lexsort((t, user))
    user, cat, t, q0 = user[order], cat[order], t[order], q0[order]
    anchor = np.r_[True, user[1:] != user[:-1]]
    t[anchor] = hh.first[user[anchor]]

    n_pairs = user.size
    cycle_days = np.array([c.cycle_days or 0.0 for c in CATEGORIES])[cat]
    exponent = np.array([c.pets_exponent for c in CATEGORIES])[cat]
    switch_p = np.array([c.switch for c in CATEGORIES])[cat] * hh.switch[user]
    cycle = cycle_days * rng.lognormal(0.0, 0.2, n_pairs) / hh.pets[user] ** exponent * q0
    group = cat * 9 + hh.tier[user] * 3 + (hh.pets[user] - 1)
    item = catalog.item_by_group.sample(rng, group)
    end = np.minimum(hh.churn[user], days)
    leak = hh.leak[user]
    sens = hh.promo_sensitivity[user]
    offset = hh.planner_offset[user]
    prev = np.full(n_pairs, -np.inf)
    alive = t < end
    first_round = t <= hh.first[user]  # the first order is never bought elsewhere
    out: list[_Lines] = []
    while alive.any():
        idx = np.flatnonzero(alive)
        tt = t[idx]
        day = np.floor(tt)
        # planners shop on their weekly day (never delaying the first order)
        plan = (offset[idx] >= 0) & ~first_round[idx]
        planned = offset[idx] + 7 * np.ceil((day - offset[idx]) / 7)
        day = np.where(plan, planned, day)
        # promotion: what falls due within `stockup_days` after a promotion is stocked up on it
        qty = q0[idx].copy()
        if promo.size:
            k = np.searchsorted(promo, day - config.stockup_days, side="left")
            p = promo[np.minimum(k, promo.size - 1)].astype(float)
            stock = (k < promo.size) & (p <= day) & (p > prev[idx]) & (rng.random(idx.size) < sens[idx])
            day = np.where(stock, p, day)
            qty = qty * np.where(stock, rng.integers(2, 4, idx.size), 1)
        ok = day < end[idx]
        bought = ok & ((rng.random(idx.size) >= leak[idx]) | first_round[idx])
        sel = idx[bought]
        out.append(_Lines(user[sel], item[sel], day[bought].astype(np.int64), qty[bought].astype(np.int64)))
        gap = cycle[idx] * catalog.pack[item[idx]] * (qty / q0[idx]) * rng.lognormal(0.0, 0.15, idx.size)
        switch = rng.random(idx.size) < switch_p[idx]
        item[idx[switch]] = catalog.item_by_group.sample(rng, group[idx[switch]])
        prev[idx] = day
        t[idx] = np.maximum(tt, day) + np.maximum(gap, 1.0)
        alive[idx] = ok & (t[idx] < end[idx])
        first_round[idx] = False
    return _Lines.concat(out)


def _explore_group(hh: _Households) -> np.ndarray:
    return hh.household * (1 << len(INTERESTS)) + hh.interest_mask


def _category_sampler(*, explore: bool) -> _Sampler:
    """Category weights per (household type, interest mask) group."""
    n_masks = 1 << len(INTERESTS)
    weights = np.zeros((3 * n_masks, len(CATEGORIES)))
    for household in range(3):
        for mask in range(n_masks):
            for ci, spec in enumerate(CATEGORIES):
                own = (spec.pet_type == CAT and household != _HOUSEHOLD_DOG) or (
                    spec.pet_type == DOG and household != _HOUSEHOLD_CAT
                )
                w = spec.explore_weight if explore else spec.browse_weight
                w *= 1.0 if own else 0.03
                if spec.interest is not None and mask & (1 << INTERESTS.index(spec.interest)):
                    w *= 2.0
                weights[household * n_masks + mask, ci] = w
    return _Sampler.from_weights(weights)


def _exploratory_items(
    rng: np.random.Generator, catalog: _Catalog, hh: _Households, user: np.ndarray, sampler: _Sampler
) -> np.ndarray:
    cat = sampler.sample(rng, _explore_group(hh)[user])
    return catalog.item_by_group.sample(rng, cat * 9 + hh.tier[user] * 3 + (hh.pets[user] - 1))


def _add_exploration(
    rng: np.random.Generator,
    config: SampleConfig,
    catalog: _Catalog,
    hh: _Households,
    promo: np.ndarray,
    replenish: _Lines,
) -> _Lines:
    """Treats, toys, grooming and accessories: add-ons, own orders, promotion buys; then de-duplicate."""
    days = config.days
    sampler = _category_sampler(explore=True)
    treats = np.array([c.group == "treats" for c in CATEGORIES])

    def lines(user: np.ndarray, day: np.ndarray) -> _Lines:
        item = _exploratory_items(rng, catalog, hh, user, sampler)
        qty = 1 + (treats[catalog.category[item]] & (rng.random(user.size) < 0.3))
        return _Lines(user, item, day.astype(np.int64), qty.astype(np.int64))

    # add-ons to replenishment orders
    order_key = np.unique(replenish.user.astype(np.int64) * (days + 1) + replenish.day)
    n_add = rng.poisson(config.addon_rate * hh.engagement[order_key // (days + 1)] ** 0.5)
    key = np.repeat(order_key, n_add)
    addons = lines(key // (days + 1), key % (days + 1))

    # own exploratory orders while active
    buyer = np.flatnonzero(np.isfinite(hh.first) & (hh.first < days))
    lo = hh.first[buyer]
    span = np.minimum(hh.churn[buyer], days) - lo
    n_own = rng.poisson(config.explore_per_month / 30.0 * hh.engagement[buyer] * span)
    user = np.repeat(buyer, n_own)
    own = lines(user, np.floor(np.repeat(lo, n_own) + rng.random(user.size) * np.repeat(span, n_own)))

    # promotion days: active buyers with some sensitivity buy a few extra items
    promo_parts = []
    for p in promo:
        active = buyer[(hh.first[buyer] <= p) & (hh.churn[buyer] > p)]
        taker = active[rng.random(active.size) < 0.4 * hh.promo_sensitivity[active]]
        user = np.repeat(taker, 1 + rng.poisson(1.0, taker.size))
        promo_parts.append(lines(user, np.full(user.size, p)))

    out = _Lines.concat([replenish, addons, own, *promo_parts])
    keep = out.day < days
    key = (out.user.astype(np.int64) * (days + 1) + out.day) * len(catalog.items) + out.item
    _, first_idx = np.unique(np.where(keep, key, -1), return_index=True)
    first_idx = first_idx[keep[first_idx]]
    return _Lines(out.user[first_idx], out.item[first_idx], out.day[first_idx], out.qty[first_idx])


@dataclass(frozen=True)
class _Sessions:
    user: np.ndarray
    start: np.ndarray  # seconds since window start


def _session_seconds(
    rng: np.random.Generator, hh: _Households, user: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """Start second of a session of `user` on `day`: around the preferred hour, never before sign-up."""
    hour = np.mod(hh.hour[user] + rng.normal(0.0, 1.3, user.size), 24.0)
    sec = day.astype(np.int64) * SECONDS_PER_DAY + (hour * 3600).astype(np.int64)
    signup = np.floor(hh.signup[user] * SECONDS_PER_DAY).astype(np.int64)
    return np.maximum(sec, signup + rng.integers(60, 1800, user.size))


def _browse_sessions(
    rng: np.random.Generator, config: SampleConfig, hh: _Households, promo: np.ndarray
) -> _Sessions:
    """Sessions without a purchase: sign-up, browsing while active, tapering after churn, promotions."""
    days = float(config.days)
    n = hh.n
    rate = config.browse_per_week / 7.0 * hh.engagement
    buyer = np.isfinite(hh.first) & (hh.first < days)
    # non-buyers stay for a couple of weeks; buyers until churn, then taper for about ten days
    active_end = np.where(buyer, np.minimum(hh.churn, days), hh.signup + rng.exponential(12.0, n))
    span = np.clip(active_end, None, days) - hh.signup
    n_active = rng.poisson(rate * np.maximum(span, 0.0))
    user = np.repeat(np.arange(n), n_active)
    day = np.repeat(hh.signup, n_active) + rng.random(user.size) * np.repeat(span, n_active)
    churned = buyer & (hh.churn < days)
    n_taper = rng.poisson(rate * 10.0 * churned)
    taper_user = np.repeat(np.arange(n), n_taper)
    taper_day = np.repeat(hh.churn, n_taper) + rng.exponential(10.0, taper_user.size)
    users, days_ = [user, taper_user], [day, taper_day]
    for p in promo:
        active = np.flatnonzero((hh.signup <= p) & (active_end > p))
        taker = active[rng.random(active.size) < 0.5 * hh.promo_sensitivity[active]]
        users.append(taker)
        days_.append(np.full(taker.size, float(p)))
    user = np.concatenate(users)
    day = np.floor(np.concatenate(days_))
    keep = day < days
    start = _session_seconds(rng, hh, user[keep], day[keep])
    # every user looks around right at sign-up
    signup_sec = np.floor(hh.signup * SECONDS_PER_DAY).astype(np.int64) + rng.integers(5, 60, n)
    return _Sessions(user=np.r_[np.arange(n), user[keep]], start=np.r_[signup_sec, start])


@dataclass(frozen=True)
class _RawEvents:
    user: np.ndarray
    item: np.ndarray  # -1 for logins
    kind: np.ndarray  # code of s.EVENT_TYPES
    sec: np.ndarray  # seconds since window start
    qty: np.ndarray
    price: np.ndarray  # NaN except purchases
    order: np.ndarray  # -1 except purchases


def _events(
    rng: np.random.Generator,
    config: SampleConfig,
    catalog: _Catalog,
    hh: _Households,
    lines: _Lines,
    sessions: _Sessions,
) -> _RawEvents:
    """Turn orders and browsing sessions into login, view, favourite, cart and purchase events."""
    days = config.days
    parts: list[tuple[np.ndarray, ...]] = []

    def add(
        user: np.ndarray,
        item: np.ndarray,
        kind: s.EventType,
        sec: np.ndarray,
        qty: np.ndarray | None = None,
        price: np.ndarray | None = None,
        order: np.ndarray | None = None,
    ) -> None:
        m = user.size
        parts.append(
            (
                user,
                item,
                np.full(m, _EVENT_CODE[kind]),
                sec,
                np.ones(m, dtype=np.int64) if qty is None else qty,
                np.full(m, np.nan) if price is None else price,
                np.full(m, -1) if order is None else order,
            )
        )

    # orders: one session per (day, user), order numbers in time order
    order_key = lines.day.astype(np.int64) * hh.n + lines.user
    keys, order = np.unique(order_key, return_inverse=True)
    o_user, o_day = keys % hh.n, keys // hh.n
    o_start = _session_seconds(rng, hh, o_user, o_day)
    sort = np.argsort(order, kind="stable")
    line_user, line_item, line_qty, order = lines.user[sort], lines.item[sort], lines.qty[sort], order[sort]
    n_lines = np.bincount(order, minlength=keys.size)
    rank = np.arange(order.size) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines)
    base = o_start[order] + 20 + 100 * rank
    add(o_user, np.full(o_user.size, -1), s.EventType.LOGIN, o_start)
    viewed = rng.random(order.size) < 0.85
    add(
        line_user[viewed],
        line_item[viewed],
        s.EventType.VIEW,
        base[viewed] + rng.integers(0, 60, viewed.sum()),
    )
    carted = rng.random(order.size) < 0.92
    add(
        line_user[carted],
        line_item[carted],
        s.EventType.CART,
        base[carted] + 70 + rng.integers(0, 20, carted.sum()),
    )
    is_promo = np.isin(o_day, _promo_day_indices(config))[order]
    lo, hi = config.promo_discount
    discount = np.where(
        is_promo,
        rng.uniform(lo, hi, order.size),
        np.where(rng.random(order.size) < 0.06, rng.uniform(0.05, 0.1, order.size), 0.0),
    )
    price = np.round(catalog.price[line_item] * (1.0 - discount), 2)
    buy_sec = o_start[order] + 20 + 100 * n_lines[order] + 30 + rank
    add(line_user, line_item, s.EventType.PURCHASE, buy_sec, line_qty, price, order)

    # browsing sessions: a login, a few views, some favourites and abandoned carts
    b_user, b_start = sessions.user, sessions.start
    add(b_user, np.full(b_user.size, -1), s.EventType.LOGIN, b_start)
    n_views = 1 + rng.poisson(1.5 * np.sqrt(hh.engagement[b_user]))
    v_user = np.repeat(b_user, n_views)
    v_rank = np.arange(v_user.size) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    v_sec = np.repeat(b_start, n_views) + 15 + 50 * v_rank + rng.integers(0, 40, v_user.size)
    v_cat = _category_sampler(explore=False).sample(rng, _explore_group(hh)[v_user])
    v_item = catalog.browse_item.sample(rng, v_cat)
    add(v_user, v_item, s.EventType.VIEW, v_sec)
    fav = rng.random(v_user.size) < 0.06
    add(v_user[fav], v_item[fav], s.EventType.FAVORITE, v_sec[fav] + 5)
    cart = rng.random(v_user.size) < 0.05
    add(v_user[cart], v_item[cart], s.EventType.CART, v_sec[cart] + 10)

    cols = [np.concatenate([p[i] for p in parts]) for i in range(7)]
    user, item, kind, sec, qty, price, order = cols
    # one event per user and second (no exact duplicates): bump collisions by a second, in order
    o = np.lexsort((kind, sec, user))
    user, item, kind, sec, qty, price, order = (c[o] for c in (user, item, kind, sec, qty, price, order))
    rank = np.arange(sec.size, dtype=np.int64)
    span = np.int64(days + 2) * SECONDS_PER_DAY + sec.size
    shifted = np.maximum.accumulate(user.astype(np.int64) * span + sec - rank)
    sec = shifted - user.astype(np.int64) * span + rank
    keep = sec < days * SECONDS_PER_DAY
    return _RawEvents(user[keep], item[keep], kind[keep], sec[keep], qty[keep], price[keep], order[keep])


def _events_frame(raw: _RawEvents, config: SampleConfig, hh: _Households, *, n_items: int) -> pd.DataFrame:
    o = np.lexsort((raw.user, raw.sec))
    user, item, kind, sec = raw.user[o], raw.item[o], raw.kind[o], raw.sec[o]
    order = raw.order[o]
    # order ids numbered in time order of their purchases
    is_order = order >= 0
    _, first = np.unique(order[is_order], return_index=True)
    renumber = np.full(order.max() + 1 if is_order.any() else 0, -1)
    renumber[order[is_order][np.sort(first)]] = np.arange(first.size)
    order = np.where(is_order, renumber[np.maximum(order, 0)], -1)
    order_ids = _ids("o", first.size, width=8)
    start_ns = pd.Timestamp(config.start).value
    frame = pd.DataFrame(
        {
            s.USER_ID: pd.Categorical.from_codes(user, categories=hh.users[s.USER_ID].to_numpy()),
            s.ITEM_ID: pd.Categorical.from_codes(item, categories=_ids("i", n_items, width=4)),
            s.EVENT_TYPE: pd.Categorical.from_codes(kind, dtype=s.EVENT_TYPE_DTYPE),
            s.TS: (start_ns + sec * 1_000_000_000).astype(s.TS_DTYPE),
            s.QUANTITY: raw.qty[o],
            s.PRICE: raw.price[o],
            s.ORDER_ID: pd.Categorical.from_codes(order, categories=order_ids),
        }
    )
    return s.conform(frame, s.EVENTS)
