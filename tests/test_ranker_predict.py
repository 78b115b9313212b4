"""The ranker's prediction through LightGBM's C entry point (ranker._Booster) gives Booster.predict's values: the
raw score of a regressor and the probability of a binary classifier, at the best iteration when early stopping set
one, else every tree."""
from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from omnidecide.models.recommender.ranker import _Booster


@pytest.mark.parametrize("objective", ["regression", "binary"])
@pytest.mark.parametrize("early_stop", [False, True])
def test_c_entry_point_predicts_what_booster_predict_does(objective, early_stop):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    y = X[:, 0] - 0.5 * X[:, 1] + rng.normal(scale=0.3, size=600)
    if objective == "binary":
        y = (y > 0).astype(float)
    train, valid = lgb.Dataset(X[:400], y[:400]), lgb.Dataset(X[400:], y[400:])
    callbacks = [lgb.early_stopping(3, verbose=False)] if early_stop else []
    booster = lgb.train({"objective": objective, "verbose": -1, "num_threads": 1, "learning_rate": 0.3},
                        train, num_boost_round=60, valid_sets=[valid], callbacks=callbacks)
    assert (booster.best_iteration > 0) == early_stop
    Z = rng.normal(size=(50, 6))
    ours = _Booster(booster, objective == "binary").predict(Z)
    np.testing.assert_array_equal(ours, booster.predict(Z, num_threads=1))
