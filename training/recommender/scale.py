"""Recommender training at retail scale (issue 14): 1M customers x 200k items, ~50M events, on one 2-core machine.

The small-data pipeline (pipeline.fit_and_evaluate) refits the whole model several times: once per validation window
and graph normalisation while tuning, once on the training part for the holdout, once on everything. At 50M events
each refit is minutes of sparse products and a randomized top-k eigen-solve, so above LARGE_EVENTS events:
- every choice (graph filter, stage weights, TIFU settings, the LightGBM second stage and its calibration) and the
  holdout evaluation run on the events of a fixed random sample of SAMPLE_USERS customers (all their events, the whole
  catalogue): `pipeline.choose_and_evaluate`, unchanged, on that sample;
- the served model is ONE build on every event: one randomized top-k solve (spectral.py), no dense item x item
  matrix (EASE is off above blend.EASE_MAX_ITEMS), TIFU neighbours searched among a random pool of TIFU_POOL
  customers (all pairs of 1M customers: 10^12 similarities; the sample's are searched among baskets.NEIGHBOUR_POOL),
  the faiss index built when the version is saved.
The metrics are the sample's (named `sample_*` in the version's metrics beside the holdout figures).

The filter's cut-off mu is relative to the largest eigenvalue of the normalised item graph, whose entries
sum_u x_ui x_uj / (d_u sqrt(d_i d_j)) do not change in expectation when customers are sampled (the item degrees
shrink with the sample); so the sample's mu is moved only by the change in edges per customer
(`for_size` on n_tuned / share of customers sampled), not by the 20x change in edges.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.models.recommender.baskets import TIFU
from omnidecide.models.recommender.core import Recommender
from omnidecide.store.compact import release
from omnidecide.training.recommender.evaluation import for_size

LARGE_EVENTS = 5_000_000  # above this many events, the scale path
SAMPLE_USERS = 50_000     # customers whose events tune, choose and evaluate (~2.5M events at 50 per customer)
TIFU_POOL = 10_000        # customers among whom each customer's TIFU neighbours are searched in the served model


def is_large(path: Path) -> bool:
    """Does the events file hold more than LARGE_EVENTS rows? (Parquet: its footer; CSV: ~60 bytes a row.) Decided
    before loading: a large file is loaded compact (store/compact.py: categoricals, ~35 bytes a row)."""
    from omnidecide.store.chunks import _parquet_file, is_parquet

    path = Path(path)
    if not path.is_file():  # missing or a folder: `load` names it (a stat here was a traceback)
        return False
    if is_parquet(path):  # a file that is not Parquet: SchemaError naming it, not pyarrow's ArrowInvalid
        return _parquet_file(path).metadata.num_rows > LARGE_EVENTS
    return path.stat().st_size > 60 * LARGE_EVENTS


def memory_gb(field: str) -> float:
    """This process's resident memory (`VmRSS`) or its peak so far (`VmHWM`) in GB, from /proc (Linux; 0 elsewhere):
    the stage figures beside the stage timers, so a version says which phase set the job's peak."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1e6
    except (OSError, StopIteration, ValueError):
        return 0.0


def user_sample(events: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The events of a fixed random sample (seeded) of `n` customers."""
    ids = pd.unique(events["user_id"].dropna())
    if len(ids) <= n:
        return events
    keep = np.random.default_rng(seed).choice(len(ids), n, replace=False)
    out = events[events["user_id"].isin(ids[keep])]
    for c in out.columns:  # a compact frame's categoricals still list the 1M customers and every value
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].cat.remove_unused_categories()
    return out


def fit_large(events: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None, seed: int = 0,
              figures: dict | None = None, sample_users: int = SAMPLE_USERS, tifu_pool: int = TIFU_POOL):
    """Choose and evaluate on a customer sample, then one build on every event. Returns (model, metrics, params)
    as pipeline.fit_and_evaluate does."""
    from omnidecide.training.recommender.pipeline import choose_and_evaluate

    t_start = time.time()
    n_users = int(events["user_id"].nunique())
    sample = user_sample(events, sample_users, seed)
    n_sample = int(sample["user_id"].nunique())
    ch = choose_and_evaluate(sample, items, users, seed, figures=figures)
    del sample
    memory = {"choose_peak_rss_gb": memory_gb("VmHWM")}
    release()  # the sample's arrays are gone: hand their freed pages back before the build's largest ones
    memory["before_final_rss_gb"] = memory_gb("VmRSS")
    t_fit = time.time()
    tifu = replace(ch.tifu or TIFU(), pool=tifu_pool)
    final = Recommender.build(events, items, users, params=ch.gp, stage=ch.stage, tifu=tifu)
    # the eigenpairs depend on the graph only; mu, p and c act at scoring, so the size move is set after the build,
    # on the built graph's edge count (no second pass over 50M events to count them)
    final.graph.params = for_size(ch.gp, ch.n_tuned * n_users / max(n_sample, 1), int(final.X.nnz))
    final.ranker = ch.ranker
    metrics = {**ch.metrics, "sample_users": n_sample, "users": n_users, "tuned_mu": ch.gp.mu}
    metrics["choose_seconds"] = t_fit - t_start
    metrics.update(memory, final_peak_rss_gb=memory_gb("VmHWM"))  # the peak so far: ≥ the choice's means the build's
    metrics["final_fit_seconds"] = time.time() - t_fit
    metrics["total_seconds"] = time.time() - t_start
    params = {**ch.params, "graph": final.graph.params.as_dict(), "tifu": tifu.settings(),
              "scale": {"sample_users": n_sample, "tifu_pool": tifu_pool, "users": n_users}}
    return final, metrics, params
