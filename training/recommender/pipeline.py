"""Recommender pipeline: holdout split -> tune on validation cuts carved from the training part (`tuning`) -> choose
what serves on the latest cut -> evaluate once on the holdout -> refit on everything.

Splits follow time (issue 13): repeat-heavy data holds out each user's last basket, other data a global time window
(the latest 20% of events). `protocol="random"` (per-user random 80/20) exists for the literature-comparison table
only. The holdout is never used to choose anything that ranks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from omnidecide.models.errors import InputError
from omnidecide.models.metrics import ranking_report
from omnidecide.models.recommender.core import Recommender, StageParams
from omnidecide.models.recommender.graph_filter import FilterParams
from omnidecide.training.recommender.evaluation import (K, baseline_topk, batch_rows, batch_size, detect_repeats,  # noqa: F401
                                                        edges, evaluate, for_size, holdout, relevant_sets, score_key,
                                                        stage1_rows, test_channels, top_k, topk_stage1)
from omnidecide.training import splits
from omnidecide.training.recommender.tuning import tune  # noqa: F401  (re-exported: the benchmark tunes through it)

RANKER_CUTS = 3  # last-basket cuts whose candidates train the LightGBM stage on repeat data (the validation cut first)
RANKER_CUTS_MAX_EVENTS = 1_000_000  # above this, the validation cut alone: each further cut is a refit


def second_stage_data(rec: Recommender, uidx: np.ndarray, rel: list[set], now: np.ndarray, chans: list):
    """Candidates (stage-1 top-N), features and labels for users `uidx`."""
    from omnidecide.models.recommender.ranker import N_CAND, candidates, features

    Fs, ys, groups, cands = [], [], [], []
    chunk = batch_size(rec)
    for b in range(0, len(uidx), chunk):
        sl = slice(b, b + chunk)
        cols, st, score, z, rep, allowed = stage1_rows(rec, uidx[sl], now[sl], N_CAND, model=True)
        cand = candidates(score, allowed)
        F = features(rec, cand, score, z, rep, st, now[sl], chans[sl], cols)
        cand = cand if cols is None else cols[cand]
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


def earlier_cuts(fit_part: pd.DataFrame, items, gp, n_tuned: int, stage, tifu, n: int = RANKER_CUTS - 1) -> list:
    """(model, validation part) for up to `n` last-basket cuts before the validation cut, each model fit on what came
    before its cut with the tuned settings: more rows for the LightGBM stage (one basket per customer was few).
    Repeat data only, and not above RANKER_CUTS_MAX_EVENTS events (each cut is a refit)."""
    out, part = [], fit_part
    if len(fit_part) > RANKER_CUTS_MAX_EVENTS:
        return out
    for _ in range(n):
        part, val = splits.last_basket(part)
        if val.empty:
            break
        out.append((Recommender.build(part, items, params=for_size(gp, n_tuned, edges(part)), stage=stage, tifu=tifu),
                    val))
    return out


def _stage_rows(rec: Recommender, val: pd.DataFrame):
    uidx, rel, now = relevant_sets(rec, val)
    return second_stage_data(rec, uidx, rel, now, test_channels(rec, val, uidx))[:3]


def choose_serving(rec_fit: Recommender, val: pd.DataFrame, seed: int, extra: list = ()):
    """On the validation cut (stage 1 fit without it): fit LightGBM on the candidates (plus the rows of the `extra`
    earlier cuts, see earlier_cuts), score it by 2-fold cross-fitting over the validation cut's users, and pick what
    serves: stage 1, stage 1 + LightGBM, or buy-again, whichever scores best there (so the served ranking is never
    below buy-again on that cut). Returns (second stage or None, serve, info)."""
    from omnidecide.models.recommender.ranker import SecondStage

    uidx, rel, now = relevant_sets(rec_fit, val)
    chans = test_channels(rec_fit, val, uidx)
    options = {"stage1": ranking_report(topk_stage1(rec_fit, uidx, now, with_ranker=False), rel, K)}
    if rec_fit.repeat.has_repeats or rec_fit.tifu is not None:
        options["buy_again"] = baseline_topk(rec_fit, val, "buy_again")
    if len(uidx) < 20:  # before any candidate is built: with none at all there is nothing to stack (a ValueError)
        info = {"ranker_training_rows": 0, "ranker_cuts": 0, "second_stage": "skipped: fewer than 20 validation users"}
        serve = _serving(options, info)
        return None, ("buy_again" if serve == "buy_again" else "model"), info
    X, y, groups, cands = second_stage_data(rec_fit, uidx, rel, now, chans)
    more = [_stage_rows(r, v) for r, v in extra]
    Xm = np.concatenate([X] + [m[0] for m in more])
    ym = np.concatenate([y] + [m[1] for m in more])
    gm = np.concatenate([groups] + [m[2] for m in more])
    info: dict = {"ranker_training_rows": len(ym), "ranker_cuts": 1 + len(more)}
    ss = None
    if y.sum() < 10 or y.sum() == len(y):
        info["second_stage"] = "skipped: too few positives among validation candidates"
    else:
        fold = np.random.default_rng(seed).random(len(uidx)) < 0.5
        row_fold = np.repeat(fold, groups)
        reranked: list = [None] * len(uidx)
        n_val = len(y)  # rows of the validation cut; the earlier cuts' rows train both folds
        for f in (True, False):
            keep = np.concatenate([row_fold != f, np.ones(len(ym) - n_val, bool)])
            part = SecondStage.fit(Xm[keep], ym[keep], np.concatenate([groups[fold != f], gm[len(groups):]]), seed)
            users = np.flatnonzero(fold == f)
            sub = _rerank(part, X[row_fold == f], groups[fold == f], [cands[n] for n in users])
            for n, c in zip(users, sub):
                reranked[n] = c
        options["stage1+lightgbm"] = ranking_report([c[:K] for c in reranked], rel, K)
        ss = SecondStage.fit(Xm, ym, gm, seed, classifier_rows=len(y))
    serve = _serving(options, info)
    if ss is not None:
        ss.use_for_ranking = serve == "stage1+lightgbm"
    return ss, ("buy_again" if serve == "buy_again" else "model"), info


def _serving(options: dict[str, dict], info: dict) -> str:
    """The option that scores best on validation (the first on a tie); its figures and the choice go into `info`."""
    serve = max(options, key=lambda name: (score_key(options[name]), -list(options).index(name)))
    info.update({f"validation_{name}_{m}": v for name, o in options.items() for m, v in o.items()})
    info["served_ranking"] = serve
    return serve


def calibrate(ss, rec: Recommender, test: pd.DataFrame, seed: int) -> dict:
    """Fit the purchase-probability calibrator on the holdout candidates (cross-fitted ECE reported). Ranking is not
    touched: the calibrator is monotone and the ranker separate."""
    from omnidecide.models.calibration import fit_calibrator
    from omnidecide.models.metrics import classification_report, reliability_curve

    uidx, rel, now = relevant_sets(rec, test)
    Xt, yt, _, _ = second_stage_data(rec, uidx, rel, now, test_channels(rec, test, uidx))
    p = ss.classifier.predict_proba(Xt)[:, 1]
    pc = np.clip(p, 1e-9, 1 - 1e-9)
    ss.calibrator, cinfo = fit_calibrator(np.log(pc / (1 - pc)), yt, seed)
    p_cf = cinfo["cross_fitted_prob"]  # each candidate calibrated by a calibrator that did not see it
    cal = classification_report(yt, p_cf)
    return {**{f"purchase_prob_{k}": v for k, v in cal.items()}, "purchase_prob_mean": float(p_cf.mean()),
            "purchase_prob_raw_ece": classification_report(yt, p)["ece"], "purchase_prob_calibration": cinfo["method"],
            "purchase_rate_candidates": float(yt.mean()), "purchase_prob_reliability": reliability_curve(yt, p_cf)}


def fit_and_evaluate(events: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None, seed: int = 0,
                     protocol: str = "time", figures: dict | None = None):
    """Tune and choose on validation, evaluate on the holdout, refit on everything. Returns (model, metrics, params).
    `figures`, when given, receives what the version's report draws (see training.recommender.figures)."""
    t_start = time.time()
    ch = choose_and_evaluate(events, items, users, seed, protocol, figures)
    t_fit = time.time()
    gp = for_size(ch.gp, ch.n_tuned, edges(events))
    final = Recommender.build(events, items, users, params=gp, stage=ch.stage, tifu=ch.tifu)
    final.ranker = ch.ranker
    ch.metrics["final_fit_seconds"] = time.time() - t_fit
    ch.metrics["total_seconds"] = time.time() - t_start
    ch.params["graph"] = gp.as_dict()
    return final, ch.metrics, ch.params


def check_holdout(events: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Refuse a log whose holdout judges nobody: no customer of the test part has an earlier event in the training
    part (e.g. every event at one timestamp, so the time cut leaves nothing before it). Fitting on it went on to a
    ValueError deep in the second stage; the figures would have judged no one."""
    if len(test) and test["user_id"].isin(set(train["user_id"])).any():
        return
    ts = events["timestamp"]
    when = (f"every event is at {ts.iloc[0]}" if ts.nunique() == 1 else
            f"the holdout starts at {test['timestamp'].min()}" if len(test) else "nobody has two baskets")
    raise InputError(f"events: no customer of the holdout has an earlier event to learn from ({when}); the recommender "
                     "learns from each customer's past and is judged on their later events: give events at more than "
                     "one moment (timestamps with the time of day, or a longer period)")


@dataclass
class Choice:
    """What validation chose and the holdout measured, before the final refit on every event."""

    gp: FilterParams   # the graph filter, as tuned (on a graph of `n_tuned` edges: move it with `for_size`)
    n_tuned: int
    stage: StageParams
    tifu: object       # TIFU settings (unfitted) or None
    ranker: object     # the LightGBM second stage or None
    metrics: dict
    params: dict


def choose_and_evaluate(events: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None, seed: int = 0,
                        protocol: str = "time", figures: dict | None = None) -> Choice:
    """Holdout split, tuning on validation cuts of the training part, the second stage, and the holdout evaluation
    of what serves: everything `fit_and_evaluate` does but the final refit (the scale path refits on more data)."""
    has_repeats, rebuy_share = detect_repeats(events)
    train, test = holdout(events, seed, has_repeats, protocol)
    check_holdout(events, train, test)
    gp, stage, tinfo = tune(train, items, seed, has_repeats, protocol)
    extra = earlier_cuts(tinfo["fit_part"], items, gp, tinfo["n_tuned"], stage, tinfo["tifu"]) if has_repeats else []
    ranker, serve, rinfo = choose_serving(tinfo["model"], tinfo["val"], seed, extra)
    stage = replace(stage, serve=serve)
    rec = Recommender.build(train, items, users, params=for_size(gp, tinfo["n_tuned"], edges(train)), stage=stage,
                            tifu=tinfo["tifu"])
    metrics = {f"holdout_stage1_{k}": v for k, v in evaluate(replace_stage(rec, serve="model"), test).items()}
    metrics.update({f"popularity_{k}": v for k, v in baseline_topk(rec, test, "popularity").items()})
    if has_repeats:
        metrics.update({f"buy_again_{k}": v for k, v in baseline_topk(rec, test, "buy_again").items()})
    metrics.update({f"validation_{k}": v for k, v in tinfo["validation"].items()})
    metrics.update(rinfo)
    reliability = None
    if ranker is not None:
        cal = calibrate(ranker, rec, test, seed)
        reliability = cal.pop("purchase_prob_reliability")  # a curve, not a metric: goes to `figures`
        metrics.update(cal)
        ranker.info = {k: v for k, v in metrics.items() if k.startswith(("purchase_prob", "served", "validation_stage"))}
    rec.ranker = ranker
    metrics.update({f"holdout_{k}": v for k, v in evaluate(rec, test).items()})  # what serving does
    if figures is not None:
        from omnidecide.training.recommender.figures import holdout_figures
        figures.update(holdout_figures(rec, test, has_repeats), purchase_prob_reliability=reliability)
    split = "last_basket" if has_repeats else ("per_user_random_0.2" if protocol == "random" else "global_time_0.2")
    params = {"graph": gp.as_dict(), "stage": stage.__dict__, "split": split, "repeat_heavy": has_repeats,
              "rebuy_share": rebuy_share, "tuning_trials": tinfo["trials"],
              "tifu": tinfo["tifu"].settings() if tinfo["tifu"] is not None else None}
    return Choice(gp, tinfo["n_tuned"], stage, tinfo["tifu"], ranker, metrics, params)


def replace_stage(rec: Recommender, **kw) -> Recommender:
    """The same fitted model with other stage settings (a shallow copy; nothing is refit)."""
    from copy import copy
    other = copy(rec)
    other.stage = replace(rec.stage, **kw)
    other.ranker = None
    return other
