"""Batch jobs on a local Ray give exactly the rows of the single-process commands (recommend --all-users and
predict churn, users sharded across 2 workers)."""
from __future__ import annotations

import os
from operator import attrgetter

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import omnidecide.cli.churn  # noqa: F401  (registers the commands)
import omnidecide.cli.recommender  # noqa: F401
from omnidecide.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module, started as a command starts its own (starting one takes ~15 s); the commands
    join it instead of starting their own."""
    pytest.importorskip("ray")
    from omnidecide.serving.batch import _Ray

    with _Ray(None, 2) as ray:
        yield ray


def test_local_ray_workers_keep_the_commands_priority(local_ray):
    """Ray nices its workers by 15 unless told not to: a `--workers 2` job would then lose the CPU to every other
    process on the machine, where its single-process run competes as an equal."""
    nice = local_ray.remote(lambda: os.nice(0))
    assert local_ray.get(nice.remote()) == os.nice(0)


@pytest.fixture(scope="module")
def trained(synth_world):
    from omnidecide.training import recommender

    os.environ["OMNIDECIDE_CHURN_FIT_SECONDS"] = "4"
    rec = recommender.train(synth_world / "events.csv", synth_world / "items.csv", synth_world / "users.csv", seed=0)
    res = runner.invoke(app, ["train", "churn", "--events", str(synth_world / "events.csv"), "--horizon-days", "90"])
    assert res.exit_code == 0, res.output
    return str(rec), res.stdout.strip().splitlines()[-1]


def _run(args: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output


def test_recommend_all_users_on_ray_equals_single_process(trained, local_ray, tmp_path):
    rec, _ = trained
    base = ["recommend", "--all-users", "--k", "10", "--model", rec]
    _run(base + ["--output", str(tmp_path / "one.csv")])
    _run(base + ["--output", str(tmp_path / "ray.csv"), "--workers", "2"])
    one, on_ray = (pd.read_csv(tmp_path / f, dtype=str, keep_default_na=False) for f in ("one.csv", "ray.csv"))
    assert one["user_id"].nunique() > 500 and len(one) > 5000
    pd.testing.assert_frame_equal(one, on_ray)


def test_workers_share_one_copy_of_the_arrays(trained, local_ray, tmp_path, monkeypatch):
    """A Ray worker builds the recommender over views of the arrays the driver put once in the object store
    (models/recommender/shared.py), the retrieval's item vectors included: the same rows as the version loaded from
    its files, with the faiss path on (the version saved again with its index); the big arrays are read-only views of
    the store's copy, the catalogue's own arrays private writable copies (a live catalogue change edits them)."""
    from omnidecide.models.recommender import retrieval, shared
    from omnidecide.models.recommender.batch_score import Job
    from omnidecide.models.recommender.core import SHARED, Recommender
    from omnidecide.store import registry

    monkeypatch.setattr(retrieval, "MIN_ITEMS", 100)
    monkeypatch.setattr(retrieval, "N_ANN", 40)
    Recommender.load(registry.path("recommender", trained[0])).save(tmp_path)  # now with items.faiss
    refs = shared.put_arrays(tmp_path, local_ray.put)
    arrays = shared.views(refs, local_ray.get)
    big = max(arrays, key=lambda n: arrays[n].nbytes)
    assert {SHARED + k for k in ("total", "second", "codes", "tifu_pool_indices")} <= set(arrays)
    assert SHARED + "E" not in arrays
    assert arrays[big].nbytes > 200_000 and not arrays[big].flags.writeable
    assert all(arrays[n].flags.writeable for n in shared.WRITTEN if n in arrays)
    files, views = Recommender.load(tmp_path), Recommender.load(tmp_path, arrays)
    # the vectors a request reads are the faiss index's own (memory-mapped from items.faiss: shared through the page
    # cache), the moments the driver's
    assert np.shares_memory(views.X.data, arrays["X_data"])
    assert views.retrieval.items.second_total is arrays[SHARED + "second"]
    assert np.shares_memory(views.retrieval.items._code_bytes, arrays[SHARED + "codes"])  # what faiss walks
    assert np.shares_memory(views.tifu._by_item()[2].indices, arrays[SHARED + "tifu_pool_indices"])
    for name in ("E", "items.total", "items.second_total"):
        np.testing.assert_array_equal(attrgetter(name)(views.retrieval), attrgetter(name)(files.retrieval))
    ids = [str(u) for u in files.user_ids]
    rows = [[[(r.item_id, r.score, r.reason, r.source) for r in ranked] for ranked in Job(rec, 10).rows(ids)]
            for rec in (files, views)]
    assert rows[0] == rows[1] and len(rows[0]) == len(ids)


def test_predict_churn_on_ray_equals_single_process(trained, local_ray, synth_world, tmp_path):
    _, churn = trained
    base = ["predict", "churn", "--events", str(synth_world / "events.csv"), "--as-of", "2026-05-01",
            "--horizon-days", "90", "--model", churn]
    _run(base + ["--output", str(tmp_path / "one.csv")])
    _run(base + ["--output", str(tmp_path / "ray.csv"), "--workers", "2"])
    one, on_ray = (pd.read_csv(tmp_path / f, dtype=str, keep_default_na=False) for f in ("one.csv", "ray.csv"))
    assert len(one) > 500
    pd.testing.assert_frame_equal(one, on_ray)


def test_users_file_or_all_users_not_both(trained, tmp_path):
    res = runner.invoke(app, ["recommend", "--output", str(tmp_path / "x.csv")])
    assert res.exit_code != 0 and "--all-users" in str(res.exception)


def _per_request(rt, ids, k, **ctx) -> pd.DataFrame:
    """The rows `/recommend` gives, one request per user (what the batch rows must equal)."""
    from omnidecide.serving.batch import REC_COLUMNS
    from omnidecide.serving.recommender import RecommendRequest

    rows = []
    for u in ids:
        resp = rt.recommend(RecommendRequest(user_id=u, k=k, **ctx))
        rows += [(u, it.rank, it.item_id, f"{it.score:.6g}", it.reason) for it in resp.items]
    return pd.DataFrame(rows, columns=REC_COLUMNS)


@pytest.mark.parametrize("path", ["full scoring", "retrieval"])
def test_batch_rows_equal_per_request_rows(trained, monkeypatch, path):
    """serving.batch scores a block of users at a time (models/recommender/batch_score.py): every row, score string
    and reason equals the per-request path's, for every customer, with the most popular items sold out
    (substitutes), 60 new items posted live (cold: reached through their category), a no-consent customer, a
    customer the model does not know, a channel and a store. The retrieval variant builds the faiss index on this
    400-item world and asks it for a quarter of the catalogue, so the candidates matter."""
    from omnidecide.models.recommender import retrieval
    from omnidecide.serving import batch
    from omnidecide.serving.catalogue import Changes, apply
    from omnidecide.serving.recommender import RecommenderRuntime

    rt = RecommenderRuntime(trained[0], live=False)
    if path == "retrieval":
        monkeypatch.setattr(retrieval, "N_ANN", 40)
        rt.rec.retrieval = retrieval.Retrieval.build(rt.rec)
    top = np.argsort(-rt.rec.pop["global"], kind="stable")[:12]
    cats = [str(c) for c in rt.rec.categories if str(c) != "unknown"]
    apply(rt, Changes(1, [{"item_id": str(rt.rec.item_ids[j]), "category": None, "price": None, "margin": None,
                           "stock": 0.0, "title": None} for j in top] +
                      [{"item_id": f"new{n:03d}", "category": cats[n % len(cats)], "price": 5.0, "margin": 0.3,
                        "stock": 9, "title": None} for n in range(60)]))
    rec = rt.rec
    rec.no_consent = set(rec.no_consent) | {str(rec.user_ids[3])}
    ids = [str(u) for u in rec.user_ids] + ["somebody-new"]
    for k, ctx in ((10, {}), (5, {"channel": "douyin", "store_id": "s01"})):
        want = _per_request(rt, ids, k, **ctx)
        got, fallbacks = batch.recommend_rows(rt, ids, k, **ctx)
        assert fallbacks == len(rec.no_consent & set(ids)) + 1 and len(got) == k * len(ids)
        pd.testing.assert_frame_equal(got, want)
    assert {"substitute", "repeat", "new_item", "gnn"} <= set(_sources(rt, ids[:300], 10)), \
        "the world must exercise the rules"


def _sources(rt, ids, k) -> list[str]:
    from omnidecide.serving.recommender import RecommendRequest

    return [it.source for u in ids for it in rt.recommend(RecommendRequest(user_id=u, k=k)).items]
