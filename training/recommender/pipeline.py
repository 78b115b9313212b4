"""Recommender pipeline: holdout split -> tune on a validation cut carved from the training part -> choose what serves
on that cut -> evaluate once on the holdout -> refit on everything.

Splits follow time (issue 13): repeat-heavy data holds out each user's last basket, other data a global time window
(the latest 20% of events). `protocol="random"` (per-user random 80/20) exists for the literature-comparison table
only. The holdout is never used to choose anything that ranks.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from omnidecide.models.metrics import ranking_report
from omnidecide.models.recommender.baskets import TIFU, buy_again_scores
from omnidecide.models.recommender.core import (CONSUMED, EVENT_WEIGHTS, Recommender, StageParams, combine, seconds)
from omnidecide.models.recommender.graph_filter import FilterParams, GraphFilterCF
from omnidecide.training import splits

K = 20
NORMS = ((0.25, 0.3), (0.5, 0.3))  # (user, item) normalisation exponents of the graph
SIDE_W = (0.0, 3.0)  # item -> category/genre edge weight: without / with side-information nodes
GRID = {"c": (0.25, 0.35), "mu": (0.02, 0.03, 0.04, 0.055), "p": (3.0, 4.0)}
# The best cut-off mu falls as the graph grows: on nested validation splits of ML-100K (51k vs 64k ratings) it fell
# about in proportion to 1/edges, in every seed and every (c, p). Tuning happens on a part of the data, so the chosen
# mu is moved to the size of the graph it is applied to: mu * (edges_tuned / edges)^MU_SIZE_EXPONENT.
MU_SIZE_EXPONENT = 1.0
REP_WEIGHTS = (0.5, 1.0, 2.0, 4.0)
POP_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)  # recent popularity added to the graph score (time splits reward it)
TIFU_WEIGHTS = (0.0, 0.3, 1.0, 3.0, 10.0)
# TIFU-KNN settings tried on validation: (group size m, r_g) fits x (neighbours k, alpha) scorings; r_b stays 0.9
TIFU_FITS = ((3, 0.7), (7, 0.7), (7, 0.9))
TIFU_SCORING = ((100, 0.7), (300, 0.7), (300, 0.9))
MAX_TUNING_USERS = 3000  # validation users scored per setting: the tuning cost stops growing with the user base


def edges(events: pd.DataFrame) -> int:
    """Number of user-item edges the graph built from `events` will have."""
    ev = events[events["item_id"].notna() & events["event"].isin(list(EVENT_WEIGHTS))]
    return int(len(ev.drop_duplicates(["user_id", "item_id"])))


def for_size(gp: FilterParams, n_tuned: int, n: int) -> FilterParams:
    """The filter tuned on a graph of `n_tuned` edges, moved to a graph of `n` edges (see MU_SIZE_EXPONENT)."""
    return replace(gp, mu=gp.mu * (n_tuned / max(n, 1)) ** MU_SIZE_EXPONENT)


def detect_repeats(events: pd.DataFrame) -> tuple[bool, float]:
    """Does anyone re-buy? (share of buyer-item pairs bought on two or more days, over items with re-buys)."""
    from omnidecide.models.recommender.repeat import MIN_REBUY_SHARE

    buys = events[(events["event"] == "purchase") & events["item_id"].notna()]
    if not len(buys):
        return False, 0.0
    days = buys.assign(d=buys["timestamp"].dt.floor("D")).drop_duplicates(["user_id", "item_id", "d"])
    per_pair = days.groupby(["user_id", "item_id"]).size()
    share = float((per_pair >= 2).mean())
    return share >= MIN_REBUY_SHARE / 5, share


def holdout(events: pd.DataFrame, seed: int, has_repeats: bool, protocol: str = "time") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Repeat-heavy data: each user's last basket; otherwise the latest 20% of events (global cutoff), or a per-user
    random 80/20 split with protocol="random"."""
    if has_repeats:
        return splits.last_basket(events)
    if protocol == "random":
        return splits.per_user_random(events, 0.2, seed)
    return splits.global_time_share(events, 0.2)


def relevant_sets(rec: Recommender, test: pd.DataFrame) -> tuple[np.ndarray, list[set], np.ndarray]:
    """Users (indices into rec) with positive test items, their relevant item sets and their 'now' (first test time)."""
    pos = test[test["event"].isin(CONSUMED) & test["item_id"].notna()] if test["event"].isin(CONSUMED).any() else test
    pos = pos[pos["user_id"].isin(rec.user_index) & pos["item_id"].isin(rec.item_index)]
    u = pd.Index(rec.user_ids).get_indexer(pos["user_id"])
    i = pd.Index(rec.item_ids).get_indexer(pos["item_id"])
    df = pd.DataFrame({"u": u, "i": i, "t": seconds(pos["timestamp"]) - rec.t0})
    grp = df.groupby("u")
    uidx = np.array(sorted(grp.groups), dtype=int)
    items_of = grp["i"].agg(lambda s: set(s.tolist()))
    rel = [items_of[x] for x in uidx]
    now = grp["t"].min().reindex(uidx).to_numpy(dtype=float)
    return uidx, rel, now


def test_channels(rec: Recommender, test: pd.DataFrame, uidx: np.ndarray) -> list:
    """The channel of each user's first test event (the request context), None when unknown."""
    if "channel" not in test.columns:
        return [None] * len(uidx)
    t = test.sort_values("timestamp", kind="stable").drop_duplicates("user_id")
    ch = dict(zip(t["user_id"], t["channel"]))
    return [ch.get(rec.user_ids[u]) if isinstance(ch.get(rec.user_ids[u]), str) else None for u in uidx]


def top_k(score: np.ndarray, allowed: np.ndarray, k: int = K) -> list[np.ndarray]:
    score = np.where(allowed, score, -np.inf)
    top = np.argpartition(-score, k, axis=1)[:, :k]
    return list(np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), 1, kind="stable"), 1))


def topk_stage1(rec: Recommender, uidx: np.ndarray, now: np.ndarray, k: int = K, chunk: int = 1024,
                with_ranker: bool = True) -> list[np.ndarray]:
    """What serving ranks (stage 1, the LightGBM stage when kept, or buy-again when validation chose it)."""
    out = []
    for b in range(0, len(uidx), chunk):
        st = rec.batch_state(uidx[b: b + chunk])
        score, z, rep, allowed = rec.stage1(st, now[b: b + chunk])
        if with_ranker and rec.ranker is not None and rec.stage.serve == "model":
            score = rec.ranker.rescore_batch(rec, score, z, rep, st, allowed, now[b: b + chunk])
        out.extend(top_k(score, allowed, k))
    return out


def evaluate(rec: Recommender, test: pd.DataFrame, k: int = K) -> dict[str, float]:
    uidx, rel, now = relevant_sets(rec, test)
    return ranking_report(topk_stage1(rec, uidx, now, k), rel, k)


def baseline_topk(rec: Recommender, test: pd.DataFrame, kind: str, k: int = K) -> dict[str, float]:
    """popularity (allowed items by training popularity) or buy_again (personal purchase count, ties by popularity)."""
    uidx, rel, now = relevant_sets(rec, test)
    tops = []
    for b in range(0, len(uidx), 1024):
        st = rec.batch_state(uidx[b: b + 1024])
        allowed = ~(st.cons & (rec.repeat.item_share[None, :] <= 0))
        if kind == "buy_again":
            score = buy_again_scores(st.nb, rec.pop["global"])
            allowed = np.ones_like(allowed)
        else:
            score = np.broadcast_to(rec.pop["global"], allowed.shape)
        tops.extend(top_k(score, allowed, k))
    return ranking_report(tops, rel, k)


class Parts:
    """Stage-1 parts of a fixed set of validation users, computed once so each stage setting is a cheap combine."""

    def __init__(self, rec: Recommender, uidx: np.ndarray, now: np.ndarray):
        self.rec, self.uidx, self.now = rec, uidx, now
        self.refresh()

    def refresh(self) -> None:
        self.st = self.rec.batch_state(self.uidx)
        _, self.z, self.rep, self.allowed = self.rec.stage1(self.st, self.now, model=True)

    def refresh_tifu(self) -> None:
        self.st.tifu = self.rec.tifu.scores(self.uidx)

    def tops(self, stage: StageParams) -> list[np.ndarray]:
        return top_k(combine(self.z, self.rep, self.st.tifu, stage, self.rec.pop_z()), self.allowed)


def _key(m: dict) -> float:
    return m["ndcg@20"] + m["recall@20"]


def tune(train: pd.DataFrame, items: pd.DataFrame | None, seed: int, has_repeats: bool,
         protocol: str = "time") -> tuple[FilterParams, StageParams, dict]:
    """Pick the graph filter, the TIFU settings and the stage weights on a validation cut carved from `train`
    (never from test). The chosen filter fits the carved part (`n_tuned` edges in the info); move it with `for_size`
    before refitting. The info carries the fitted model and the validation cut for `choose_serving`."""
    fit_part, val = holdout(train, seed + 1000, has_repeats, protocol)
    trials = []
    rec = Recommender.build(fit_part, items, params=FilterParams(seed=seed))
    uidx, rel, now = relevant_sets(rec, val)
    if len(uidx) > MAX_TUNING_USERS:  # a fixed random sample (seeded) of the validation users
        keep = np.sort(np.random.default_rng(seed).choice(len(uidx), MAX_TUNING_USERS, replace=False))
        uidx, rel, now = uidx[keep], [rel[j] for j in keep], now[keep]
    stage = StageParams(rep_weight=1.0)
    rec.stage = stage
    # graph-filter parameters first (stage weight fixed). The eigenbasis depends only on the graph (normalisation,
    # side nodes), so each graph is decomposed once.
    best, graphs = None, {}
    for (ue, be), sw in itertools.product(NORMS, SIDE_W if rec.side is not None and rec.side.shape[0] else (0.0,)):
        rec.graph = graphs[(ue, be, sw)] = GraphFilterCF(FilterParams(user_exp=ue, beta=be, side_w=sw, seed=seed)).fit(
            rec.X, rec.side)
        for c in GRID["c"]:
            for mu in GRID["mu"]:
                for p in GRID["p"]:
                    rec.graph.params = replace(rec.graph.params, c=c, mu=mu, p=p)
                    m = ranking_report(topk_stage1(rec, uidx, now), rel, K)
                    trials.append({"user_exp": ue, "beta": be, "side_w": sw, "c": c, "mu": mu, "p": p, **m})
                    if best is None or _key(m) > best[0]:
                        best = (_key(m), replace(rec.graph.params), m)
    rec.graph = graphs[(best[1].user_exp, best[1].beta, best[1].side_w)]
    rec.graph.params = best[1]
    chosen_tifu, best_m = None, best[2]
    parts = Parts(rec, uidx, now)
    for pw in POP_WEIGHTS[1:]:
        cand = replace(stage, pop_w=pw)
        m = ranking_report(parts.tops(cand), rel, K)
        trials.append({"pop_w": pw, **m})
        if _key(m) > _key(best_m):
            stage, best_m = cand, m
    if rec.repeat.has_repeats or rec.tifu is not None:
        if rec.tifu is not None:  # TIFU-KNN on its own first (as its paper tunes it), then its weight in our score
            t_best = None
            for m_, r_g in TIFU_FITS:
                fitted = TIFU(m=m_, r_g=r_g, k=max(k for k, _ in TIFU_SCORING)).fit(rec.baskets)
                for k, alpha in TIFU_SCORING:
                    rec.tifu = replace(fitted, k=k, alpha=alpha)
                    rec.tifu.V, rec.tifu.nbrs = fitted.V, fitted.nbrs
                    parts.refresh_tifu()
                    m = ranking_report(top_k(parts.st.tifu, np.ones_like(parts.allowed)), rel, K)
                    trials.append({"tifu": rec.tifu.settings(), **m})
                    if t_best is None or _key(m) > t_best[0]:
                        t_best = (_key(m), rec.tifu)
            rec.tifu = t_best[1]
            chosen_tifu = replace(rec.tifu)
            parts.refresh_tifu()
        s_best = None
        for tw, rw in itertools.product(TIFU_WEIGHTS if rec.tifu is not None else (0.0,), REP_WEIGHTS):
            cand = replace(stage, rep_weight=rw, tifu_w=tw)
            m = ranking_report(parts.tops(cand), rel, K)
            trials.append({"rep_weight": rw, "tifu_w": tw, **m})
            if s_best is None or _key(m) > s_best[0]:
                s_best = (_key(m), cand, m)
        stage, best_m = s_best[1], s_best[2]
    rec.stage = stage
    return best[1], stage, {"validation": best_m, "trials": len(trials), "model": rec, "val": val,
                            "n_tuned": edges(fit_part), "tifu": chosen_tifu, "val_users": (uidx, rel, now)}


def second_stage_data(rec: Recommender, uidx: np.ndarray, rel: list[set], now: np.ndarray, chans: list):
    """Candidates (stage-1 top-N), features and labels for users `uidx`."""
    from omnidecide.models.recommender.ranker import candidates, features

    Fs, ys, groups, cands = [], [], [], []
    for b in range(0, len(uidx), 1024):
        sl = slice(b, b + 1024)
        st = rec.batch_state(uidx[sl])
        score, z, rep, allowed = rec.stage1(st, now[sl], model=True)
        cand = candidates(score, allowed)
        F = features(rec, cand, score, z, rep, st, now[sl], chans[sl])
        y = np.array([[j in r for j in c] for c, r in zip(cand, rel[sl])], dtype=float)
        Fs.append(F.reshape(-1, F.shape[2]))
        ys.append(y.ravel())
        groups += [cand.shape[1]] * len(cand)
        cands.extend(cand)
    return np.concatenate(Fs), np.concatenate(ys), np.array(groups), cands


def _rerank(ss, X: np.ndarray, groups: np.ndarray, cands: list[np.ndarray]) -> list[np.ndarray]:
    r = ss.ranker.predict(X)
    off = np.concatenate([[0], np.cumsum(groups)])
    return [c[np.argsort(-r[off[n]: off[n + 1]], kind="stable")] for n, c in enumerate(cands)]


def choose_serving(rec_fit: Recommender, val: pd.DataFrame, seed: int):
    """On the validation cut (stage 1 fit without it): fit LightGBM on the candidates, score it by 2-fold cross-fitting
    over users, and pick what serves: stage 1, stage 1 + LightGBM, or buy-again, whichever scores best there (so the
    served ranking is never below buy-again on that cut). Returns (second stage or None, serve, info)."""
    from omnidecide.models.recommender.ranker import SecondStage

    uidx, rel, now = relevant_sets(rec_fit, val)
    chans = test_channels(rec_fit, val, uidx)
    options = {"stage1": ranking_report(topk_stage1(rec_fit, uidx, now, with_ranker=False), rel, K)}
    if rec_fit.repeat.has_repeats or rec_fit.tifu is not None:
        options["buy_again"] = baseline_topk(rec_fit, val, "buy_again")
    X, y, groups, cands = second_stage_data(rec_fit, uidx, rel, now, chans)
    info: dict = {}
    ss = None
    if y.sum() < 10 or y.sum() == len(y) or len(uidx) < 20:
        info["second_stage"] = "skipped: too few positives among validation candidates"
    else:
        fold = np.random.default_rng(seed).random(len(uidx)) < 0.5
        row_fold = np.repeat(fold, groups)
        reranked: list = [None] * len(uidx)
        for f in (True, False):
            part = SecondStage.fit(X[row_fold != f], y[row_fold != f], groups[fold != f], seed)
            users = np.flatnonzero(fold == f)
            sub = _rerank(part, X[row_fold == f], groups[fold == f], [cands[n] for n in users])
            for n, c in zip(users, sub):
                reranked[n] = c
        options["stage1+lightgbm"] = ranking_report([c[:K] for c in reranked], rel, K)
        ss = SecondStage.fit(X, y, groups, seed)
    serve = max(options, key=lambda name: (_key(options[name]), -list(options).index(name)))
    if ss is not None:
        ss.use_for_ranking = serve == "stage1+lightgbm"
    info.update({f"validation_{name}_{m}": v for name, o in options.items() for m, v in o.items()})
    info["served_ranking"] = serve
    return ss, ("buy_again" if serve == "buy_again" else "model"), info


def calibrate(ss, rec: Recommender, test: pd.DataFrame, seed: int) -> dict:
    """Fit the purchase-probability calibrator on the holdout candidates (cross-fitted ECE reported). Ranking is not
    touched: the calibrator is monotone and the ranker separate."""
    from omnidecide.models.calibration import fit_calibrator
    from omnidecide.models.metrics import classification_report

    uidx, rel, now = relevant_sets(rec, test)
    Xt, yt, _, _ = second_stage_data(rec, uidx, rel, now, test_channels(rec, test, uidx))
    p = ss.classifier.predict_proba(Xt)[:, 1]
    pc = np.clip(p, 1e-9, 1 - 1e-9)
    ss.calibrator, cinfo = fit_calibrator(np.log(pc / (1 - pc)), yt, seed)
    p_cf = cinfo["cross_fitted_prob"]  # each candidate calibrated by a calibrator that did not see it
    cal = classification_report(yt, p_cf)
    return {**{f"purchase_prob_{k}": v for k, v in cal.items()}, "purchase_prob_mean": float(p_cf.mean()),
            "purchase_prob_raw_ece": classification_report(yt, p)["ece"], "purchase_prob_calibration": cinfo["method"],
            "purchase_rate_candidates": float(yt.mean())}


def fit_and_evaluate(events: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None, seed: int = 0,
                     protocol: str = "time"):
    """Tune and choose on validation, evaluate on the holdout, refit on everything. Returns (model, metrics, params)."""
    t_start = time.time()
    has_repeats, rebuy_share = detect_repeats(events)
    train, test = holdout(events, seed, has_repeats, protocol)
    gp, stage, tinfo = tune(train, items, seed, has_repeats, protocol)
    ranker, serve, rinfo = choose_serving(tinfo["model"], tinfo["val"], seed)
    stage = replace(stage, serve=serve)
    rec = Recommender.build(train, items, users, params=for_size(gp, tinfo["n_tuned"], edges(train)), stage=stage,
                            tifu=tinfo["tifu"])
    metrics = {f"holdout_stage1_{k}": v for k, v in evaluate(replace_stage(rec, serve="model"), test).items()}
    metrics.update({f"popularity_{k}": v for k, v in baseline_topk(rec, test, "popularity").items()})
    if has_repeats:
        metrics.update({f"buy_again_{k}": v for k, v in baseline_topk(rec, test, "buy_again").items()})
    metrics.update({f"validation_{k}": v for k, v in tinfo["validation"].items()})
    metrics.update(rinfo)
    if ranker is not None:
        metrics.update(calibrate(ranker, rec, test, seed))
        ranker.info = {k: v for k, v in metrics.items() if k.startswith(("purchase_prob", "served", "validation_stage"))}
    rec.ranker = ranker
    metrics.update({f"holdout_{k}": v for k, v in evaluate(rec, test).items()})  # what serving does
    t_fit = time.time()
    gp = for_size(gp, tinfo["n_tuned"], edges(events))
    final = Recommender.build(events, items, users, params=gp, stage=stage, tifu=tinfo["tifu"])
    final.ranker = ranker
    metrics["final_fit_seconds"] = time.time() - t_fit
    metrics["total_seconds"] = time.time() - t_start
    split = "last_basket" if has_repeats else ("per_user_random_0.2" if protocol == "random" else "global_time_0.2")
    params = {"graph": gp.as_dict(), "stage": stage.__dict__, "split": split, "repeat_heavy": has_repeats,
              "rebuy_share": rebuy_share, "tuning_trials": tinfo["trials"],
              "tifu": tinfo["tifu"].settings() if tinfo["tifu"] is not None else None}
    return final, metrics, params


def replace_stage(rec: Recommender, **kw) -> Recommender:
    """The same fitted model with other stage settings (a shallow copy; nothing is refit)."""
    from copy import copy
    other = copy(rec)
    other.stage = replace(rec.stage, **kw)
    other.ranker = None
    return other
