"""Batch scoring sharded by user, in this process or on Ray: `recommend --all-users` and `predict churn`.

Why Ray: at a million customers a batch job outgrows one process (and, beyond that, one machine). Each Ray worker is
an actor that holds the stored model version (from the model store it can see: the same BENTOML_HOME on a local Ray,
an imported store on a cluster node, see README "Scale-out") and scores shards of users with the same batched scorer
as one process (models/recommender/batch_score.py, whose rows are `/recommend`'s); the driver writes the shards in
order, so the rows are exactly those of the single-process path (tests/test_ray_batch.py checks both).

The recommender's arrays are in memory once per node, not once per worker: the driver puts each array of the version
into Ray's object store (models/recommender/shared.py), and every worker builds its Recommender over read-only,
zero-copy views of them (at 1M customers x 200k items, 2.7 GB of the 4.6 GB a worker held when each loaded its own).
On a cluster each node's object store fetches them once.

`address`: None starts a local Ray for the job with `workers` actors and stops it afterwards; "auto" or
"ray://host:10001" joins a running cluster (KubeRay's head service).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

REC_COLUMNS = ["user_id", "rank", "item_id", "score", "reason"]
SHARD_USERS = 2_000  # users per recommend shard: big enough to amortise a task, small enough to stream
_job: list = [None, None]  # (context key, batch_score.Job) of the last recommend shard in this process


def recommend_rows(rt, user_ids: Sequence[str], k: int, store_id: str | None = None, channel: str | None = None,
                   segment: str | None = None,
                   on_user: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, int]:
    """Top-k rows (REC_COLUMNS) for each user with one runtime; returns (rows, number of cold-start fallbacks).
    The rows are `/recommend`'s for the same user and context, scored a block of users at a time
    (models/recommender/batch_score.py)."""
    from omnidecide.models.recommender.batch_score import Job
    from omnidecide.serving.recommender import RecommendRequest

    # the request's own checks of the context (ids, segment syntax), once for the whole list
    req = RecommendRequest(user_id="-", k=k, store_id=store_id, channel=channel, segment=segment)
    rt.sync()
    # one Job per runtime, context and catalogue state, kept across shards: its memo (substitutes per item) grows
    # over the whole job; a live catalogue change (a new catalogue version) starts a new one
    key = (id(rt), id(rt.rec), rt.live.seen if rt.live is not None else 0, req.k, req.channel, req.store_id, segment)
    if _job[0] != key:
        _job[:] = [key, Job(rt.rec, req.k, channel=req.channel, store_id=req.store_id, segment=req.segments(),
                            store_stock=rt.store_stock.get(str(req.store_id)) if req.store_id else None)]
    job = _job[1]
    ids = [str(u) for u in user_ids]
    rows, n_fallback = [], 0
    for uid, ranked in zip(ids, job.rows(ids, on_user)):
        n_fallback += any(r.source == "fallback" for r in ranked)
        rows.extend((uid, n + 1, r.item_id, f"{r.score:.6g}" if math.isfinite(r.score) else "", r.reason)
                    for n, r in enumerate(ranked))
    return pd.DataFrame(rows, columns=REC_COLUMNS), n_fallback


def version_users(model: str | None) -> tuple[str, list[str], set[str]]:
    """(tag, trained customer ids, store ids of its catalogue snapshot) of a recommender version, without loading
    it: what the driver of a Ray job needs (its workers load the version themselves)."""
    from omnidecide.models.recommender.batch_score import stored_user_ids
    from omnidecide.store import registry, snapshot

    stored = registry.get("recommender", model)
    _, stock = snapshot.read(Path(stored.path))
    stores = set(stock["store_id"].astype(str)) if stock is not None else set()
    return str(stored.tag), stored_user_ids(stored.path), stores


def user_shards(user_ids: np.ndarray, n: int) -> list[np.ndarray]:
    """Positions of the users in each of `n` shards, by a stable hash of the id (the same user, the same shard)."""
    h = pd.util.hash_array(np.asarray(user_ids, dtype=object)) % np.uint64(max(n, 1))
    return [np.flatnonzero(h == s) for s in range(max(n, 1))]


class _Ray:
    """A Ray session for one job: joins `address`, or starts a local Ray with `workers` CPUs and stops it after."""

    def __init__(self, address: str | None, workers: int, shared_bytes: int = 0) -> None:
        """`shared_bytes`: what the job will put in the object store; a local Ray gets room for it with a quarter
        spare (its default is 30% of the free memory, which a busy machine can make smaller than a 1M version's
        arrays, and it starts spilling objects to disk at 80% full). A local Ray's workers run at the command's own
        priority: Ray's default nices them by 15, so on a shared machine a `--workers 2` job lost the CPU to every
        other process its single-process run competed with as an equal (its workers' wall time was twice their CPU
        time at scale); `nice omnidecide ...` still nices them, as it does the driver."""
        import ray

        self.ray, self.started = ray, False
        env = {k: v for k, v in os.environ.items() if k in ("BENTOML_HOME", "OMNIDECIDE_DATABASE_URL")}
        if not ray.is_initialized():
            kw = dict(runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False,
                      configure_logging=False)
            if address:
                ray.init(address=address, **kw)
            else:
                room = {"object_store_memory": int(shared_bytes / 0.75) + 2**28} if shared_bytes else {}
                ray.init(num_cpus=workers, **kw, **room, _system_config={"worker_niceness": 0})
            self.started = True

    def __enter__(self):
        return self.ray

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()


def _rec_worker(ray, tag: str):
    @ray.remote(num_cpus=1)
    class RecWorker:
        def __init__(self, shared: dict) -> None:
            """`shared`: array name -> ObjectRef (models/recommender/shared.py), resolved here as zero-copy views."""
            from omnidecide.models.recommender.shared import views
            from omnidecide.serving.recommender import RecommenderRuntime
            self.rt = RecommenderRuntime(tag, arrays=views(shared, ray.get))

        def score(self, ids: list[str], k: int, store_id, channel, segment) -> tuple[pd.DataFrame, int]:
            return recommend_rows(self.rt, ids, k, store_id, channel, segment)

    return RecWorker


def recommend_on_ray(tag: str, user_ids: list[str], k: int, *, store_id: str | None = None, channel: str | None = None,
                     segment: str | None = None, address: str | None = None, workers: int = 1,
                     shard_users: int = SHARD_USERS) -> Iterator[tuple[pd.DataFrame, int]]:
    """(rows, fallbacks) per shard of `shard_users` consecutive users, in the order of `user_ids`."""
    from omnidecide.models.recommender.shared import put_arrays, stored_bytes
    from omnidecide.store import registry

    folder = Path(registry.path("recommender", tag))
    with _Ray(address, workers, stored_bytes(folder)) as ray:
        from ray.util import ActorPool

        shared = put_arrays(folder, ray.put)  # the version's arrays, once in the object store
        n_actors = workers if address is None else max(workers, 1)
        pool = ActorPool([_rec_worker(ray, tag).remote(shared) for _ in range(n_actors)])
        shards = [user_ids[s: s + shard_users] for s in range(0, len(user_ids), shard_users)]
        yield from pool.map(lambda a, ids: a.score.remote(ids, k, store_id, channel, segment), shards)


def _churn_worker(ray, tag: str):
    @ray.remote(num_cpus=1)
    class ChurnWorker:
        def __init__(self) -> None:
            from omnidecide.serving.churn import ChurnService
            self.service = ChurnService(tag)

        def score(self, events: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int | None) -> pd.DataFrame:
            return self.service.score_frame(events, as_of, horizon_days)

    return ChurnWorker


def churn_on_ray(tag: str, events: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int | None, *,
                 address: str | None = None, workers: int = 1, shards: int | None = None) -> pd.DataFrame:
    """Churn table for every customer, customers sharded by a hash of their id; rows in user_id order as the
    single-process table is."""
    mask = (events["timestamp"] < as_of).to_numpy()
    before = events if mask.all() else events[mask]
    users = before["user_id"].astype("category")  # a no-op for store.io's compact frames: no string per row
    ids = np.asarray(users.cat.categories, dtype=object).astype(str)
    n = shards or max(2 * workers, 1)
    shard_of = np.empty(len(ids), dtype=np.int64)
    for s, p in enumerate(user_shards(ids, n)):
        shard_of[p] = s
    row_shard = shard_of[users.cat.codes.to_numpy()]
    with _Ray(address, workers) as ray:
        from ray.util import ActorPool

        pool = ActorPool([_churn_worker(ray, tag).remote() for _ in range(max(workers, 1))])
        refs = [ray.put(before[row_shard == s]) for s in range(n) if (row_shard == s).any()]
        tables = list(pool.map(lambda a, ref: a.score.remote(ref, as_of, horizon_days), refs))
    return pd.concat(tables, ignore_index=True).sort_values("user_id", kind="stable").reset_index(drop=True)
