"""Deliberately weak model configs (a few trees, tiny ALS) shared by the retrain and train tests."""

WEAK_RECOMMENDER = """
[als]
factors = 4
iterations = 1
[reranker]
n_estimators = 3
"""
WEAK_REPURCHASE = """
[lightgbm]
num_boost_round = 3
num_leaves = 3
[timing.lightgbm]
num_boost_round = 2
"""
