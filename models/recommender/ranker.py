"""LightGBM second stage over the stage-1 top-N candidates.

- a LambdaRank model reorders the candidates (used for ranking only if it lifts NDCG@20 on the holdout);
- a binary model gives a purchase probability per (user, item, channel) for the ad bidder; its calibration
  (ECE, Brier) is measured on the holdout and stored with the version.
Features: graph-filter score (z) and stage-1 score, the learned-cycle re-buy score, the user's purchase count of the
item, days since the last purchase over the item's learned cycle, item popularity overall and on the request channel,
the user's affinity to the item's category, price, the item's re-buy share, the user's own strongest event on the
item, and the re-buy signals the strong next-basket baselines use: the TIFU-KNN score (decayed basket frequency
smoothed over similar customers), days since the last purchase, the customer's own mean interval between purchases
of the item and days since over it, and the item's share of the customer's purchases.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.models.calibration import Calibrator
from omnidecide.models.recommender.repeat import DAY, personal_gap

FEATURES = ["graph_z", "stage1", "repeat", "n_bought", "due_ratio", "log_pop", "log_pop_channel", "cat_affinity",
            "price", "rebuy_share", "own_event", "tifu", "days_since", "personal_gap", "due_personal", "buy_share"]
N_CAND = 50
ONE_THREAD = b"num_threads=1"  # LightGBM's prediction parameters (`_Booster.predict`)


def candidates(score: np.ndarray, allowed: np.ndarray, n: int = N_CAND) -> np.ndarray:
    s = np.where(allowed, score, -np.inf)
    n = min(n, s.shape[1] - 1)
    if len(s) == 1:  # a request: the same selection and order on the one row, without take_along_axis's checks
        top = np.argpartition(-s[0], n)[:n]
        return top[np.argsort(-s[0, top], kind="stable")][None, :]
    top = np.argpartition(-s, n, axis=1)[:, :n]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), 1, kind="stable"), 1)


def features(rec, cand: np.ndarray, score, z, rep, st, now, channels, items: np.ndarray | None = None) -> np.ndarray:
    """(b, n, F) feature tensor for candidates `cand` (b x n column indices); `st`: the users' core.UserRows over
    the same columns. `items`: the catalogue item of each column (None: column j is item j); the columns must hold
    every item of the users' state (the category affinity and purchase shares sum over them). Each feature is
    computed at the candidates only (a request's state covers ~900 columns, its ranker looks at 50)."""
    b, n = cand.shape
    at = np.arange(b)[:, None]
    take = lambda m: m[at, cand]  # noqa: E731  (np.take_along_axis's checks cost more than the gather here)
    item = cand if items is None else items[cand]
    item_cat = rec.item_cat if items is None else rec.item_cat[items]
    now = np.asarray(rec.t_end if now is None else now, dtype=float).reshape(-1, 1)  # per user, or one for all
    nbc, lbc, fbc = take(st.nb), take(st.lb), take(st.fb)
    bought = nbc > 0
    days = (now - lbc) / DAY
    since = np.where(bought, days, np.nan)
    gap = personal_gap(nbc, lbc, fbc)
    # an item bought twice within one basket (or one second) has a mean gap of 0: days-since over it is undefined,
    # not infinite
    pos = gap > 0
    due_personal = np.where(pos, since / np.where(pos, gap, 1.0), np.nan)
    share = nbc / np.maximum(st.nb.sum(1, keepdims=True), 1)
    cyc = rec.repeat.item_cycle[item]
    due = np.where(bought, days / np.where(np.isnan(cyc) | (cyc <= 0), np.inf, cyc), -1.0)
    n_cat = len(rec.categories)
    aff = np.array([np.bincount(item_cat, weights=r, minlength=n_cat) for r in st.rows])
    aff = aff[at, rec.item_cat[item]] / np.maximum(aff.sum(1, keepdims=True), 1e-12)
    glob = rec.pop["global"]
    chan = np.array([rec.pop.get(f"channel:{c}", glob)[item[k]] for k, c in enumerate(channels)])
    F = np.empty((b, n, len(FEATURES)))
    for f, col in enumerate((take(z), take(score), take(rep), nbc, due, np.log1p(glob[item]), np.log1p(chan), aff,
                             rec.price[item] if rec.price is not None else np.nan, rec.repeat.item_share[item],
                             take(st.rows), take(st.tifu), since, gap, due_personal, share)):
        F[:, :, f] = col
    return F


class SecondStage:
    def __init__(self, ranker=None, classifier=None, use_for_ranking: bool = False, info: dict | None = None,
                 calibrator: Calibrator | None = None):
        self.ranker, self.classifier = ranker, classifier
        self.use_for_ranking = use_for_ranking
        self.info = info or {}
        # the classifier learns on validation candidates, whose base rate differs from the holdout's (fewer held-out
        # items per user); a calibrator fitted on holdout candidates maps its output to the holdout's rates
        self.calibrator = calibrator or Calibrator()

    def calibrated(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
        return self.calibrator(np.log(p / (1 - p)))

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0,
            classifier_rows: int | None = None) -> "SecondStage":
        """`classifier_rows`: the purchase-probability classifier learns from the first rows only (the validation
        cut's). /bid asks it about any item, not only candidates; fit on the earlier cuts' refits too, its trees put
        items far outside the candidates at the top calibrated bin (0.92 on the synthetic world), and /bid then valued
        random items above recommended ones (tests/test_service.py). The ranker sees every row."""
        import lightgbm as lgb

        # one thread: the candidate sets are small, and OpenMP threads spin-waiting on a shared 2-core machine made
        # these 200 rounds take minutes instead of seconds
        common = dict(learning_rate=0.1, num_leaves=15, min_data_in_leaf=20, max_bin=63, force_col_wise=True,
                      bagging_fraction=0.8, bagging_freq=1, feature_fraction=0.9, seed=seed, num_threads=1, verbose=-1,
                      deterministic=True)
        ranker = lgb.train({"objective": "lambdarank", "eval_at": [20], **common},
                           lgb.Dataset(X, y, group=groups, feature_name=FEATURES), num_boost_round=100)
        Xc, yc = (X, y) if classifier_rows is None else (X[:classifier_rows], y[:classifier_rows])
        clf = lgb.train({"objective": "binary", **common}, lgb.Dataset(Xc, yc, feature_name=FEATURES),
                        num_boost_round=100)
        return cls(_Booster(ranker, False), _Booster(clf, True))

    # --- inference ---------------------------------------------------------------------------------
    def rescore_batch(self, rec, score, z, rep, st, allowed, now, channels=None, items=None, tifu_at=None) -> np.ndarray:
        """`items`: the catalogue item of each column when the arrays cover candidates only (ranker.features).
        `tifu_at`: when `st` was built without the TIFU score, a function giving it at the candidates (b x n column
        positions); it is written into `st.tifu` there, the only place the features read it."""
        if not self.use_for_ranking:
            return score
        cand = candidates(score, allowed)
        b, n = cand.shape
        at = np.arange(b)[:, None]
        if tifu_at is not None:
            st.tifu[at, cand] = tifu_at(cand)
        F = features(rec, cand, score, z, rep, st, now, channels or [None] * b, items)
        r = self.ranker.predict(F.reshape(b * n, -1)).reshape(b, n)
        out = score.copy()
        out[at, cand] = score.max() + 1.0 + 1.0 / (1.0 + np.exp(-r))  # candidates first, in the ranker's order
        return out

    def probability(self, rec, user_id: str, item_ids: list[str], channel: str | None = None,
                    recent: pd.DataFrame | None = None) -> list[float]:
        """`recent`: fresh events not seen in training (an item carted on the app minutes ago counts now)."""
        st, _ = rec.user_state(user_id, recent)
        score, z, rep, allowed = rec.stage1(st, model=True)
        idx = np.array([rec.item_index.get(str(i), -1) for i in item_ids])
        ok = idx >= 0
        out = np.full(len(item_ids), np.nan)
        if ok.any():
            cand = idx[ok][None, :]
            F = features(rec, cand, score, z, rep, st, None, [channel])
            out[ok] = self.calibrated(self.classifier.predict_proba(F[0])[:, 1])
        return out.tolist()

    # --- persistence -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        self.ranker.booster_.save_model(str(folder / "ranker.txt"))
        self.classifier.booster_.save_model(str(folder / "classifier.txt"))
        (folder / "second_stage.json").write_text(json.dumps({"use_for_ranking": self.use_for_ranking, "info": self.info,
                                                              "calibrator": self.calibrator.to_dict()}))

    @classmethod
    def load(cls, folder: Path) -> "SecondStage | None":
        folder = Path(folder)
        if not (folder / "second_stage.json").exists():
            return None
        import lightgbm as lgb

        meta = json.loads((folder / "second_stage.json").read_text())
        return cls(_Booster(lgb.Booster(model_file=str(folder / "ranker.txt")), False),
                   _Booster(lgb.Booster(model_file=str(folder / "classifier.txt")), True),
                   meta["use_for_ranking"], meta["info"],
                   Calibrator.from_dict(meta["calibrator"]) if "calibrator" in meta else None)


class _Booster:
    """A loaded booster with the sklearn-style calls used above."""

    def __init__(self, booster, proba: bool):
        self.booster_, self._proba = booster, proba

    def predict(self, X):
        """`booster_.predict(X, num_threads=1)`, the same values, through LightGBM's C entry point for a dense matrix
        (`LGBM_BoosterPredictForMat`, called by lightgbm's own ctypes binding) with the parameter string made once:
        the Python wrapper's per-call predictor set-up and checks were ~11% of a request's 50-row predict.
        One thread: a request scores a few hundred rows, and OpenMP threads spin-waiting on busy cores made this
        call ~50 ms instead of ~1 ms (one service worker per core is how it scales)."""
        import ctypes

        from lightgbm.basic import _LIB, _safe_call

        X = np.ascontiguousarray(X, dtype=np.float64)
        out, n = np.empty(len(X)), ctypes.c_int64(0)
        # float64 (1), row-major (1), normal prediction (0: probabilities for the binary classifier, the ranker's raw
        # score), all iterations from the first up to the best one (as `Booster.predict` picks them)
        _safe_call(_LIB.LGBM_BoosterPredictForMat(
            self.booster_._handle, X.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(1), ctypes.c_int32(X.shape[0]),
            ctypes.c_int32(X.shape[1]), ctypes.c_int(1), ctypes.c_int(0), ctypes.c_int(0),
            ctypes.c_int(self.booster_.best_iteration), ONE_THREAD, ctypes.byref(n),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
        return out

    def predict_proba(self, X):
        p = self.predict(X)
        return np.stack([1 - p, p], axis=1)
