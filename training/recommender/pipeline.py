"""Recommender pipeline: load -> holdout split -> tune on a validation split carved from train -> evaluate -> refit -> save."""
from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from omnidecide.models.metrics import ranking_report
from omnidecide.models.recommender.core import CONSUMED, EVENT_WEIGHTS, Recommender, StageParams, seconds
from omnidecide.models.recommender.gnn import GNNParams, GraphFilterGNN
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
MAX_TUNING_USERS = 3000  # validation users scored per setting: the tuning cost stops growing with the user base


def edges(events: pd.DataFrame) -> int:
    """Number of user-item edges the graph built from `events` will have."""
    ev = events[events["item_id"].notna() & events["event"].isin(list(EVENT_WEIGHTS))]
    return int(len(ev.drop_duplicates(["user_id", "item_id"])))


def for_size(gp: GNNParams, n_tuned: int, n: int) -> GNNParams:
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


def holdout(events: pd.DataFrame, seed: int, has_repeats: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Repeat-heavy data: each user's last basket; otherwise a per-user random 80/20 split."""
    if has_repeats:
        return splits.last_basket(events)
    return splits.per_user_random(events, 0.2, seed)


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


def stage1_batch(rec: Recommender, u: np.ndarray, now: np.ndarray):
    rows = rec.X[u].toarray()
    cons = rec.consumed[u].toarray() > 0
    nb = rec.n_buy[u].toarray()
    lb = rec.last_buy[u].toarray() - 1.0
    return (*rec.stage1(rows, cons, nb, lb, now), rows, nb, lb)


def second_stage_data(rec: Recommender, test: pd.DataFrame):
    """Candidates (stage-1 top-N), features and labels for the users of `test`."""
    from omnidecide.models.recommender.ranker import candidates, features

    uidx, rel, now = relevant_sets(rec, test)
    chans = test_channels(rec, test, uidx)
    Fs, ys, groups, cands = [], [], [], []
    for b in range(0, len(uidx), 1024):
        sl = slice(b, b + 1024)
        score, z, rep, allowed, rows, nb, lb = stage1_batch(rec, uidx[sl], now[sl])
        cand = candidates(score, allowed)
        F = features(rec, cand, score, z, rep, rows, nb, lb, now[sl], chans[sl])
        y = np.array([[j in r for j in c] for c, r in zip(cand, rel[sl])], dtype=float)
        Fs.append(F.reshape(-1, F.shape[2]))
        ys.append(y.ravel())
        groups += [cand.shape[1]] * len(cand)
        cands.extend(cand)
    return np.concatenate(Fs), np.concatenate(ys), np.array(groups), cands, rel


def topk_stage1(rec: Recommender, uidx: np.ndarray, now: np.ndarray, k: int = K, chunk: int = 1024,
                with_ranker: bool = True) -> list[np.ndarray]:
    out = []
    for b in range(0, len(uidx), chunk):
        u = uidx[b: b + chunk]
        rows = rec.X[u].toarray()
        cons = rec.consumed[u].toarray() > 0
        nb = rec.n_buy[u].toarray()
        lb = rec.last_buy[u].toarray() - 1.0
        score, z, rep, allowed = rec.stage1(rows, cons, nb, lb, now[b: b + chunk])
        if with_ranker and rec.ranker is not None:
            score = rec.ranker.rescore_batch(rec, score, z, rep, rows, nb, lb, allowed, now[b: b + chunk])
        score = np.where(allowed, score, -np.inf)
        top = np.argpartition(-score, k, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), 1, kind="stable"), 1)
        out.extend(top)
    return out


def evaluate(rec: Recommender, test: pd.DataFrame, k: int = K) -> dict[str, float]:
    uidx, rel, now = relevant_sets(rec, test)
    return ranking_report(topk_stage1(rec, uidx, now, k), rel, k)


def baseline_topk(rec: Recommender, test: pd.DataFrame, kind: str, k: int = K) -> dict[str, float]:
    """popularity (unseen/allowed items by training popularity) or buy_again (user's own purchase frequency)."""
    uidx, rel, now = relevant_sets(rec, test)
    tops = []
    for u in uidx:
        if kind == "buy_again":
            nb = rec.n_buy[u].toarray().ravel()
            lb = rec.last_buy[u].toarray().ravel()
            s = nb + lb / (lb.max() + 1) * 0.5  # frequency, recency breaks ties
            s = np.where(nb > 0, s, -np.inf)
            pop = rec.pop["global"] / (rec.pop["global"].max() + 1) * 1e-3  # then popularity fills the list
            s = np.where(np.isfinite(s), s + 1, pop)
        else:
            allowed = ~((rec.consumed[u].toarray().ravel() > 0) & (rec.repeat.item_share <= 0))
            s = np.where(allowed, rec.pop["global"], -np.inf)
        tops.append(np.argsort(-s, kind="stable")[:k])
    return ranking_report(tops, rel, k)


def tune(train: pd.DataFrame, items: pd.DataFrame | None, seed: int, has_repeats: bool) -> tuple[GNNParams, StageParams, dict]:
    """Pick graph-filter and stage weights on a validation split carved from `train` (never from test).

    The chosen filter fits the carved part (`n_tuned` edges in the info); move it with `for_size` before refitting."""
    fit_part, val = holdout(train, seed + 1000, has_repeats)
    best, trials = None, []
    rec = Recommender.build(fit_part, items, params=GNNParams(seed=seed))
    uidx, rel, now = relevant_sets(rec, val)
    if len(uidx) > MAX_TUNING_USERS:  # a fixed random sample (seeded) of the validation users
        keep = np.sort(np.random.default_rng(seed).choice(len(uidx), MAX_TUNING_USERS, replace=False))
        uidx, rel, now = uidx[keep], [rel[j] for j in keep], now[keep]
    rw0 = StageParams(rep_weight=1.0)
    # graph-filter parameters first (stage weight fixed), then the re-buy weight for the chosen filter.
    # The eigenbasis depends only on the graph (normalisation, side nodes), so each graph is decomposed once.
    graphs = {}
    for (ue, be), sw in itertools.product(NORMS, SIDE_W if rec.side is not None and rec.side.shape[0] else (0.0,)):
        rec.gnn = graphs[(ue, be, sw)] = GraphFilterGNN(GNNParams(user_exp=ue, beta=be, side_w=sw, seed=seed)).fit(
            rec.X, rec.side)
        for c in GRID["c"]:
            for mu in GRID["mu"]:
                for p in GRID["p"]:
                    rec.gnn.params = replace(rec.gnn.params, c=c, mu=mu, p=p)
                    rec.stage = rw0
                    m = ranking_report(topk_stage1(rec, uidx, now), rel, K)
                    trials.append({"user_exp": ue, "beta": be, "side_w": sw, "c": c, "mu": mu, "p": p, **m})
                    key = m["ndcg@20"] + m["recall@20"]
                    if best is None or key > best[0]:
                        best = (key, replace(rec.gnn.params), rw0, m)
    rec.gnn = graphs[(best[1].user_exp, best[1].beta, best[1].side_w)]
    rec.gnn.params = best[1]
    if rec.repeat.has_repeats:
        for rw in REP_WEIGHTS:
            rec.stage = StageParams(rep_weight=rw)
            m = ranking_report(topk_stage1(rec, uidx, now), rel, K)
            trials.append({"rep_weight": rw, **m})
            key = m["ndcg@20"] + m["recall@20"]
            if key > best[0]:
                best = (key, best[1], rec.stage, m)
    rec.gnn.params, rec.stage = best[1], best[2]
    return best[1], best[2], {"validation": best[3], "trials": len(trials), "model": rec, "val": val,
                              "n_tuned": edges(fit_part)}


def fit_second_stage(train, test, items, rec, rec_fit, val, seed):
    """Fit LightGBM on validation candidates (stage 1 fit without them), judge it on the holdout candidates.

    Kept for ranking only if it lifts holdout NDCG@20; its probability is always kept, with its calibration."""
    from omnidecide.models.calibration import fit_calibrator
    from omnidecide.models.metrics import classification_report, ndcg_at_k, recall_at_k, reliability_curve
    from omnidecide.models.recommender.ranker import SecondStage

    Xv, yv, gv, _, _ = second_stage_data(rec_fit, val)
    if yv.sum() < 5 or yv.sum() == len(yv):
        return None, {"second_stage": "skipped: too few positives among validation candidates"}
    ss = SecondStage.fit(Xv, yv, gv, seed)
    Xt, yt, gt, cands, rel = second_stage_data(rec, test)
    r = ss.ranker.predict(Xt)
    p = ss.classifier.predict_proba(Xt)[:, 1]
    off = np.concatenate([[0], np.cumsum(gt)])
    reranked = [c[np.argsort(-r[off[n]: off[n + 1]], kind="stable")] for n, c in enumerate(cands)]
    base = ndcg_at_k(cands, rel, K)
    lifted = ndcg_at_k(reranked, rel, K)
    ss.use_for_ranking = bool(lifted > base * 1.005)
    pc = np.clip(p, 1e-9, 1 - 1e-9)
    ss.calibrator, cinfo = fit_calibrator(np.log(pc / (1 - pc)), yt, seed)
    p_cf = cinfo["cross_fitted_prob"]  # each candidate calibrated by a calibrator that did not see it
    cal = classification_report(yt, p_cf)
    info = {"second_stage_ndcg@20": lifted, "second_stage_recall@20": recall_at_k(reranked, rel, K),
            "stage1_candidates_ndcg@20": base, "second_stage_kept_for_ranking": ss.use_for_ranking,
            **{f"purchase_prob_{k}": v for k, v in cal.items()}, "purchase_prob_mean": float(p_cf.mean()),
            "purchase_prob_raw_ece": classification_report(yt, p)["ece"], "purchase_prob_calibration": cinfo["method"],
            "purchase_rate_candidates": float(yt.mean()), "purchase_prob_reliability": reliability_curve(yt, p_cf)}
    ss.info = info
    return ss, info


def fit_and_evaluate(events: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None, seed: int = 0,
                     figures: dict | None = None):
    """Tune on validation, evaluate on the holdout, refit on everything. Returns (model, metrics, params).
    `figures`, when given, receives what the version's report draws (see training.recommender.figures)."""
    t_start = time.time()
    has_repeats, rebuy_share = detect_repeats(events)
    train, test = holdout(events, seed, has_repeats)
    gp, sp_, tinfo = tune(train, items, seed, has_repeats)
    rec = Recommender.build(train, items, users, params=for_size(gp, tinfo["n_tuned"], edges(train)), stage=sp_)
    metrics = {f"holdout_stage1_{k}": v for k, v in evaluate(rec, test).items()}
    metrics.update({f"popularity_{k}": v for k, v in baseline_topk(rec, test, "popularity").items()})
    if has_repeats:
        metrics.update({f"buy_again_{k}": v for k, v in baseline_topk(rec, test, "buy_again").items()})
    metrics.update({f"validation_{k}": v for k, v in tinfo["validation"].items()})
    ranker, rinfo = fit_second_stage(train, test, items, rec, tinfo["model"], tinfo["val"], seed)
    reliability = rinfo.pop("purchase_prob_reliability", None)  # a curve, not a metric: goes to `figures`
    metrics.update(rinfo)
    rec.ranker = ranker
    metrics.update({f"holdout_{k}": v for k, v in evaluate(rec, test).items()})  # what serving does
    if figures is not None:
        from omnidecide.training.recommender.figures import holdout_figures
        figures.update(holdout_figures(rec, test, has_repeats), purchase_prob_reliability=reliability)
    t_fit = time.time()
    gp = for_size(gp, tinfo["n_tuned"], edges(events))
    final = Recommender.build(events, items, users, params=gp, stage=sp_)
    final.ranker = ranker
    metrics["final_fit_seconds"] = time.time() - t_fit
    metrics["total_seconds"] = time.time() - t_start
    params = {"gnn": gp.as_dict(), "stage": sp_.__dict__, "split": "last_basket" if has_repeats else "per_user_random_0.2",
              "repeat_heavy": has_repeats, "rebuy_share": rebuy_share, "tuning_trials": tinfo["trials"]}
    return final, metrics, params
