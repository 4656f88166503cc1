"""The storefront recommender: implicit ALS retrieval, buy-again timing, complements, cold start,
and a LightGBM LambdaRank re-ranker over the blended candidates.

Pieces (all fitted on the events before ``as_of`` only), one module each:

- **Interactions** (`interactions`): a user x item confidence matrix from every item event,
  weighted per event type, by quantity and by recency; shared with `baselines`.
- **Personal** (`als`): implicit ALS on that matrix; fresh events (``recent_item_ids``) fold a
  user's factors in again by the exact ALS least-squares step, without retraining.
- **Buy again** (`buy_again`, `history`): items the user bought before, scored by a swappable
  `BuyAgainScorer` from the user's own rhythm, the user x category rhythm and the category cycle.
- **Complements and similar items** (`complements`): cross-category co-purchases; co-interactions.
- **Cold start** (`cold_start`): unknown users get what new users with the same interest tags
  bought in their first weeks, or popular items; brand-new items borrow from their category.
- **Ranking**: candidate rows from every source (`candidates`), one feature row per (user,
  candidate) (`rerank_features`), ranked by the LambdaRank re-ranker trained on the window
  before ``as_of`` (`reranker`) or by the fixed blend; top-``k``, reasons and padding (`ranking`).
- **Rules** (`candidates`): category filter, exclusions, items bought in the last ``recent_days``
  hidden unless due again, ``k <= 100``; every row carries its reason (`columns`).

`config` holds the settings, `state` the fitted arrays (and where each is saved), `fitting` the
steps that fit them (and `StateCache`, which fits each cut-off of a run once), `persistence` save/load (npz + parquet + LightGBM text + JSON, no pickle),
`model` the `Recommender` itself, `pyfunc` the MLflow models-from-code entry.
"""

from training.recommender.buy_again import BuyAgainInputs, BuyAgainScorer, CycleBuyAgainScorer
from training.recommender.columns import (
    IS_FALLBACK,
    MAX_K,
    RANK,
    REASON,
    RECO_COLUMNS,
    SCORE,
    SIMILAR_COLUMNS,
    SOURCE_ITEM_ID,
)
from training.recommender.config import RecommenderConfig, load_recommender_config
from training.recommender.fitting import StateCache
from training.recommender.interactions import InteractionData, build_interaction_data
from training.recommender.model import Recommender

__all__ = [
    "IS_FALLBACK",
    "MAX_K",
    "RANK",
    "REASON",
    "RECO_COLUMNS",
    "SCORE",
    "SIMILAR_COLUMNS",
    "SOURCE_ITEM_ID",
    "BuyAgainInputs",
    "BuyAgainScorer",
    "CycleBuyAgainScorer",
    "InteractionData",
    "Recommender",
    "RecommenderConfig",
    "StateCache",
    "build_interaction_data",
    "load_recommender_config",
]
