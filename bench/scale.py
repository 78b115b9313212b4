"""Scale benchmark (issue J): build the big world and time every stage, with the peak memory of its process tree.

    nice python bench/scale.py --out /tmp/scale                     # 1M customers x 200k items (~50M events)
    nice python bench/scale.py --out /tmp/scale --users 20000 --items 2000   # quick run, every stage
    nice python bench/scale.py --out /tmp/scale --stages factors,exact,ann   # some stages, on the world already there

Each stage runs as its own process (the CLI as a user runs it, or a stage of this file), so its peak RSS is its own;
for Ray stages the peak is the sum over the driver and every process it started (raylet, workers). CPU seconds (user +
sys) and the load average are reported beside wall time: on a shared machine wall time mostly measures the others. Results go to
OUT/scale.json and a Markdown table on stdout (pasted in docs/BENCHMARKS.md, "Scale").

Stages run by default (DEFAULT, in this order, the issue's table): synth; validate; train churn; predict churn in one
process, on Ray with 1 and with 2 workers; the graph filter's factors at scale (interaction matrix, normalisation,
top-k item-graph eigenpairs by randomized subspace iteration); their accuracy loss against the exact decomposition on
a sub-graph small enough to decompose densely; faiss index build and ANN top-20 recall against exact scoring on 1,000
sampled users; `train recommender` itself (stage "recommender": above training.recommender.scale.LARGE_EVENTS events
it chooses on a customer sample and builds the served model once on every event); /recommend's model path on that
version in process, full scoring against faiss candidates (stage "request"); the same version behind `serve
--workers 2` over HTTP, max req/s beside a no-op endpoint and the latency at half that rate, memory per worker (stage
"request-http", bench/recommend_throughput.py); and `recommend` for every customer of the served version (or a fixed
seeded sample of them, `--rec-users N`) in one process and on Ray with 1 and 2 workers (stages "recommend-all",
"recommend-all-ray1", "recommend-all-ray2"): CPU of the whole process tree per customer, rows written, and whether
each file is byte-identical to the 1-process one.
Diagnostics, by name only: the memory the graph filter's torch adjacency takes at full size ("adjacency"; the build no
longer makes it); the CPU cost of one tuning setting at full catalogue size ("tuning-cost", on a stored recommender);
the served model's build alone ("served-build"); recommend's batched scorer against per-request calls
("batch-vs-request"); `data validate` on the events with an `event_id` on every row and 0.1% of rows delivered
again a row group later ("validate-ids": the scale world has no ids, so the default stages never judge duplicates).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from procmem import rollup

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "omnidecide.cli.__main__"] if (ROOT / "cli" / "__main__.py").exists() else \
    [str(Path(sys.executable).with_name("omnidecide"))]
AS_OF = "2026-04-01"  # label window (90 days) inside the scale world, which ends 2026-06-30
K_EIG = 256
LOGS: Path | None = None  # where each stage's full output is written (OUT/work)
# what one run reports (issue J's table: every stage a user runs, in order, on one code version) ...
DEFAULT = ("synth", "validate", "train-churn", "predict-churn", "predict-churn-ray1", "predict-churn-ray2", "factors",
           "exact", "ann", "recommender", "request", "request-http", "recommend-all", "recommend-all-ray1",
           "recommend-all-ray2")
# ... and diagnostics run by name: the torch adjacency's memory, one tuning setting's cost, the served model's build
# alone (the recommender stage includes it), recommend's batched scorer against per-request calls, validation of the
# events with an id on every row (redelivered rows caught)
STAGES = DEFAULT + ("adjacency", "tuning-cost", "served-build", "batch-vs-request", "validate-ids")


def run(name: str, argv: list[str], env: dict | None = None, timeout: float = 3600, pss: bool = False) -> dict:
    """Run one stage; wall seconds, CPU seconds (user + sys of the stage and the processes it waited for: Ray's
    daemons are not among them), the peak RSS summed over its process tree (polled every 0.2 s), and the 1-minute
    load average at its start and end (the machine is shared: wall time depends on it, CPU time much less). `pss`:
    also the peak of the tree's summed PSS (shared memory counted once: the Ray stages)."""
    import resource

    import psutil

    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT)
    ps, peak, peak_pss, at_peak, polls = psutil.Process(proc.pid), 0, 0, {}, 0
    tree_cpu: dict[int, float] = {}  # pid -> its last seen user + sys seconds (Ray's workers are not our children)
    while proc.poll() is None:
        try:
            tree = [ps] + ps.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            polls += 1
            if pss and polls % 10 == 1:  # every ~2 s: smaps_rollup walks each page (0.05 s CPU per GB-sized process)
                now = {p.pid: (rollup(p.pid).get("Pss", 0.0), p.name()) for p in tree}  # GiB
                if sum(v for v, _ in now.values()) > peak_pss:
                    peak_pss, at_peak = sum(v for v, _ in now.values()), now
            for p in tree:
                with p.oneshot():
                    t = p.cpu_times()
                    tree_cpu[p.pid] = t.user + t.system
        except psutil.Error:
            pass
        if time.perf_counter() - t0 > timeout:
            proc.kill()
        time.sleep(0.2)
    out = proc.stdout.read()
    if LOGS is not None:  # the stage's whole output (tables of bench/recommend_paths.py), beside the results
        (LOGS / ("".join(c if c.isalnum() else "_" for c in name)[:60] + ".log")).write_text(out)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    row = {"stage": name, "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(cpu, 1),
           "tree_cpu_seconds": round(sum(tree_cpu.values()), 1), "peak_rss_gb": round(peak / 2**30, 2),
           **({"peak_pss_gb": round(peak_pss, 2),  # and each process's share at that moment
               "pss_at_peak_gb": {f"{n} {pid}": round(v, 2) for pid, (v, n) in at_peak.items() if v > 1 / 16}}
              if pss else {}),
           "load": [round(load0, 1), round(os.getloadavg()[0], 1)],
           "rc": proc.returncode, "tail": [line for line in out.splitlines() if line.strip() and "Token authentication" not in line][-4:]}
    print(json.dumps(row), flush=True)
    return row


def stage_factors(world: Path, out: Path) -> None:
    """Interaction matrix (strongest event per pair) -> R~ -> top-K_EIG item-graph eigenpairs; saved for later."""
    import pyarrow.parquet as pq
    import scipy.sparse as sp

    from omnidecide.models.recommender.core import EVENT_WEIGHTS
    from omnidecide.models.recommender.spectral import item_graph_eigen

    t = pq.read_table(world / "events.parquet", columns=["user_id", "item_id", "event"]).unify_dictionaries()
    codes = {c: np.concatenate([ch.indices.to_numpy() for ch in t.column(c).chunks]) for c in t.column_names}
    names = {c: np.asarray(t.column(c).chunks[0].dictionary.to_pylist(), dtype=object) for c in t.column_names}
    del t
    weight = np.array([EVENT_WEIGHTS.get(e, 0.0) for e in names["event"]])[codes["event"]]
    n_u, n_i = len(names["user_id"]), len(names["item_id"])
    key = codes["user_id"].astype(np.int64) * n_i + codes["item_id"]
    del codes
    order = np.argsort(key, kind="stable")
    key, weight = key[order], weight[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    w = np.maximum.reduceat(weight, first)
    X = sp.csr_matrix((w, (key[first] // n_i, key[first] % n_i)), shape=(n_u, n_i))
    del key, weight, order
    du = np.maximum(np.asarray(X.sum(1)).ravel(), 1e-9)
    di = np.maximum(np.asarray(X.sum(0)).ravel(), 1e-9)
    R = (sp.diags(du ** -0.5) @ X @ sp.diags(di ** -0.5)).tocsr()
    t0, c0 = time.perf_counter(), time.process_time()
    lam, Q = item_graph_eigen(R, min(K_EIG, n_i - 2))
    print(f"pairs {X.nnz}, users {n_u}, items {n_i}, eigen {time.perf_counter() - t0:.0f} s wall, "
          f"{time.process_time() - c0:.0f} s CPU", flush=True)
    sp.save_npz(out / "X.npz", X)
    np.savez(out / "factors.npz", lam=lam / lam.max(), Q=Q.astype(np.float32), d=di, items=names["item_id"].astype(str))


def stage_exact_check(out: Path, n_items: int = 3000, n_users: int = 20000) -> None:
    """Accuracy loss of the factors on a sub-graph (most popular items, most active users): top-20 of the rational
    filter from the exact dense decomposition vs the exact top-k and the randomized top-k."""
    from copy import copy

    import scipy.sparse as sp

    from omnidecide.models.recommender.graph_filter import FilterParams, GraphFilterCF
    from omnidecide.models.recommender.spectral import item_graph_eigen

    X = sp.load_npz(out / "X.npz").tocsc()
    items = np.argsort(-np.asarray(X.getnnz(0)))[:n_items]
    X = X[:, items].tocsr()
    users = np.argsort(-np.asarray(X.getnnz(1)))[:n_users]
    X = X[users]
    exact = GraphFilterCF(FilterParams()).fit(X)  # n_items <= 4000: dense eigendecomposition
    rows = X[:1000]
    seen = rows.toarray() > 0
    top = lambda m: np.argsort(-np.where(seen, -np.inf, m.score(rows)), 1)[:, :20]  # noqa: E731
    ref = top(exact)
    overlap = lambda t: float(np.mean([len(set(a) & set(b)) / 20 for a, b in zip(ref, t)]))  # noqa: E731
    res = {}
    for k in (128, 256):
        trunc, rand = copy(exact), copy(exact)
        trunc.lam, trunc.Q = exact.lam[-k:], exact.Q[:, -k:]
        t0 = time.perf_counter()
        lam, Q = item_graph_eigen(exact.R_norm, k)
        res[f"k{k}_randomized_seconds"] = round(time.perf_counter() - t0, 1)
        rand.lam, rand.Q = lam / lam.max(), Q
        res[f"k{k}_exact_topk_overlap"] = round(overlap(top(trunc)), 3)
        res[f"k{k}_randomized_overlap"] = round(overlap(top(rand)), 3)
        res[f"k{k}_eig_rel_err_median"] = float(np.median(np.abs(lam - exact.lam[-k:] * 1) / np.maximum(exact.lam[-k:], 1e-12)))
    print(json.dumps({"subgraph": list(map(int, X.shape)), **res}), flush=True)


def stage_ann(out: Path, n_users: int = 1000) -> None:
    """faiss HNSW index over the filter's item vectors; recall@20 vs exact on sampled users; per-query latency."""
    import scipy.sparse as sp

    from omnidecide.models.recommender.graph_filter import FilterParams
    from omnidecide.models.recommender.retrieval import ItemIndex, filter_vectors, queries, recall_at

    f = np.load(out / "factors.npz")
    X = sp.load_npz(out / "X.npz")
    E, L, keep = filter_vectors(f["Q"].astype(np.float64), f["lam"], np.maximum(f["d"], 1e-9), FilterParams())
    t0 = time.perf_counter()
    index = ItemIndex(E)
    build = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    active = np.flatnonzero(X.getnnz(1) > 0)  # a customer without history gets the popularity fallback instead
    U = queries(X[np.sort(rng.choice(active, n_users, replace=False))], L)
    t0 = time.perf_counter()
    rec = recall_at(U, E, index, k=20, candidates=300)
    lat = []
    for u in U[:200]:
        s = time.perf_counter()
        index.search(u[None, :], 300)
        lat.append(time.perf_counter() - s)
    print(json.dumps({"dims": len(keep), "index": "HNSW32 inner product", "ef_search": 600,
                      "build_seconds": round(build, 1), "recall_at_20": round(rec, 4),
                      "search_ms_p50": round(1e3 * float(np.median(lat)), 2),
                      "search_ms_p99": round(1e3 * float(np.quantile(lat, 0.99)), 2),
                      "vectors_mb": round(E.nbytes / 2**20, 1)}), flush=True)


def stage_ids_file(world: Path, out: Path, every: int = 1000) -> None:
    """OUT/work/events_ids.parquet: the world's events, each row given an `event_id` (as an event stream's message
    id), and every `every`-th row of a row group delivered again at the end of the next one (a stream's redelivery:
    copies ~1M rows apart, in another read batch). `data validate` must quarantine exactly those copies."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    f = pq.ParquetFile(world / "events.parquet")
    first, copies, again = 0, 0, None
    with pq.ParquetWriter(out / "events_ids.parquet", f.schema_arrow.append(pa.field("event_id", pa.string())),
                          compression="zstd") as w:
        for g in range(f.num_row_groups):
            t = f.read_row_group(g)
            ids = pc.binary_join_element_wise("e", pc.cast(pa.array(np.arange(first, first + t.num_rows)), pa.string()), "")
            t, first = t.append_column("event_id", ids), first + t.num_rows
            w.write_table(t if again is None else pa.concat_tables([t, again]))
            again = t.take(np.arange(0, t.num_rows, every))
            copies += again.num_rows
        if again is not None:
            w.write_table(again)
    print(json.dumps({"rows": first, "redelivered": copies}))


def stage_adjacency(out: Path) -> None:
    """Memory of the graph filter's torch adjacency (LGConv's similar-items propagation) at full size: resident and
    peak RSS over the state before building it from the normalised interactions (stage "factors" saves X). The build
    no longer makes it (graph_filter.GraphFilterCF._graph: on the first `propagate`); this was its spike."""
    import scipy.sparse as sp

    from omnidecide.models.recommender.graph_filter import FilterParams, GraphFilterCF

    def rss() -> dict:
        d = {}
        for line in open("/proc/self/status"):
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                d[k] = int(v.split()[0]) / 2**20
        return d

    X = sp.load_npz(out / "X.npz").tocsr()
    g = GraphFilterCF(FilterParams())
    du, di = (np.maximum(np.asarray(X.sum(a)).ravel(), 1e-9) for a in (1, 0))
    g.R_norm, g.n_items = (sp.diags(du ** -0.5) @ X @ sp.diags(di ** -0.5)).tocsr(), X.shape[1]
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before, c0 = rss(), time.process_time()
    g._graph()
    after = rss()
    print(json.dumps({"pairs": int(X.nnz), "cpu_seconds": round(time.process_time() - c0, 1),
                      "resident_gb": round(after["VmRSS"] - before["VmRSS"], 2),
                      "peak_over_before_gb": round(after["VmHWM"] - before["VmRSS"], 2)}), flush=True)


def stage_tuning_cost(store: Path, n_users: int = 0, settings: int = 3) -> None:
    """What one tuning setting costs at the world's catalogue, on the stored recommender (its filter basis): top-20 of
    `tuning_users` customers (evaluation.tuning_users: 300 at 200k items) scored on dense catalogue rows and on
    candidates (evaluation.CANDIDATE_MIN_ITEMS), CPU seconds of each for a few (c, mu, p) of tuning.GRID, and how many
    of the dense top-20 the candidates keep."""
    from dataclasses import replace

    from omnidecide.models.recommender.core import Recommender
    from omnidecide.training.recommender import evaluation
    from omnidecide.training.recommender.tuning import GRID

    folder = store / "models" / "recommender" / (store / "models" / "recommender" / "latest").read_text().strip()
    rec = Recommender.load(folder)
    rec.ranker, rec.retrieval = None, None  # stage 1 as tuning scores it
    active = np.flatnonzero(rec.X.getnnz(1) > 0)
    n = min(n_users or evaluation.tuning_users(len(rec.item_ids)), len(active))
    rng = np.random.default_rng(0)
    uidx = np.sort(rng.choice(active, n, replace=False))
    now = np.full(n, rec.t_end)
    base, res = rec.graph.params, []
    for c, mu, p in [(GRID["c"][i % 2], GRID["mu"][i % 4], GRID["p"][i % 2]) for i in range(settings)]:
        rec.graph.params = replace(base, c=c, mu=mu, p=p)
        row = {"c": c, "mu": mu, "p": p}
        for name, cut in (("dense", 10**12), ("candidates", 0)):
            evaluation.CANDIDATE_MIN_ITEMS = cut
            t0 = time.process_time()
            row[name] = evaluation.topk_stage1(rec, uidx, now)
            row[f"{name}_cpu_s"] = round(time.process_time() - t0, 2)
        row["top20_kept"] = round(float(np.mean([len(set(a) & set(b)) / 20 for a, b in
                                                 zip(row.pop("dense"), row.pop("candidates"))])), 4)
        res.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"items": len(rec.item_ids), "users_scored": n, "settings": res}), flush=True)


def stage_batch_vs_request(n_users: int = 500, k: int = 20) -> None:
    """The batched scorer against the per-request path in one process on the served version: CPU ms per customer of
    each (the same customers, an evenly spaced sample), and whether every row is the same."""
    import pandas as pd

    from omnidecide.serving import batch
    from omnidecide.serving.recommender import RecommenderRuntime, RecommendRequest

    t0 = time.process_time()
    rt = RecommenderRuntime(None, live=False)
    load = time.process_time() - t0
    ids = [str(u) for u in rt.rec.user_ids[:: max(len(rt.rec.user_ids) // n_users, 1)][:n_users]]
    t0, one = time.process_time(), []
    for u in ids:
        one += [(u, it.rank, it.item_id, f"{it.score:.6g}", it.reason)
                for it in rt.recommend(RecommendRequest(user_id=u, k=k)).items]
    per_request = time.process_time() - t0
    t0 = time.process_time()
    rows, _ = batch.recommend_rows(rt, ids, k)
    batched = time.process_time() - t0
    print(json.dumps({"users": len(ids), "load_cpu_s": round(load, 1),
                      "per_request_cpu_ms": round(1e3 * per_request / len(ids), 2),
                      "batched_cpu_ms": round(1e3 * batched / len(ids), 2),
                      "rows_identical": bool(pd.DataFrame(one, columns=batch.REC_COLUMNS).equals(rows))}), flush=True)


def stage_recommend_all(todo: set[str], store: Path, work: Path, env: dict, sample: int, keep) -> None:
    """`recommend` for every customer of the served version (sample 0) or for a fixed seeded sample of `sample` of
    them, in one process and on a local Ray with 1 and 2 workers, as the CLI runs it. Each row adds the customers,
    rows written, CPU ms per customer over the whole process tree (driver, raylet, workers) and whether its file is
    byte-identical to the 1-process file; `keep(row)` for each."""
    wanted = [s for s in ("recommend-all", "recommend-all-ray2", "recommend-all-ray1") if s in todo]
    if not wanted:
        return
    os.environ["BENTOML_HOME"] = str(store)
    from omnidecide.models.recommender.batch_score import stored_user_ids
    from omnidecide.store import registry

    ids = stored_user_ids(registry.path("recommender"))
    who = ["--all-users"]
    if sample and sample < len(ids):
        pick = np.sort(np.random.default_rng(0).choice(len(ids), sample, replace=False))
        (work / "rec_users.txt").write_text("\n".join(ids[p] for p in pick) + "\n")
        who, ids = ["--users", str(work / "rec_users.txt")], [ids[p] for p in pick]
    for stage in wanted:
        n = {"recommend-all": 0, "recommend-all-ray1": 1, "recommend-all-ray2": 2}[stage]
        label = f"recommend {'--all-users' if who[0] == '--all-users' else f'{len(ids):,} sampled users'}, " + \
            (f"Ray {n} worker{'s' if n > 1 else ''}" if n else "1 process")
        path = work / f"{stage}.csv"
        row = run(label, CLI + ["recommend", *who, "--output", str(path)] + (["--workers", str(n)] if n else []),
                  env, pss=True)
        with open(path, "rb") as f:
            written = sum(1 for _ in f) - 1
        first = work / "recommend-all.csv"
        row.update(users=len(ids), rows_written=written,
                   cpu_ms_per_user=round(1e3 * row["tree_cpu_seconds"] / max(len(ids), 1), 2),
                   identical_to_1_process=first.exists() and first.read_bytes() == path.read_bytes())
        print(json.dumps({k: row[k] for k in ("users", "rows_written", "cpu_ms_per_user", "identical_to_1_process")}),
              flush=True)
        keep(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--stages", default=",".join(DEFAULT), help="comma-separated subset of: " + ", ".join(STAGES) +
                    " (default: " + ", ".join(DEFAULT) + "; a world already under OUT/world is reused when synth is "
                    "left out)")
    ap.add_argument("--json", default="scale.json", help="results file under OUT")
    ap.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads per stage (see below)")
    ap.add_argument("--rec-users", type=int, default=0, help="recommend-all stages: a fixed seeded sample of this many "
                    "of the version's customers (0: --all-users)")
    ap.add_argument("--table", action="store_true", help="print the table of OUT/JSON (a finished or stopped run) and exit")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.table:
        return print_table(json.loads((a.out / a.json).read_text()))
    world, work = a.out / "world", a.out / "work"
    if a.stage:
        {"factors": lambda: stage_factors(world, work), "exact": lambda: stage_exact_check(work),
         "ann": lambda: stage_ann(work), "adjacency": lambda: stage_adjacency(work),
         "ids-file": lambda: stage_ids_file(world, work),
         "tuning-cost": lambda: stage_tuning_cost(a.out / "model_store"),
         "batch-vs-request": stage_batch_vs_request}[a.stage]()
        return
    work.mkdir(parents=True, exist_ok=True)
    global LOGS
    LOGS = work
    store = a.out / "model_store"
    todo = set(a.stages.split(","))
    unknown = todo - set(STAGES)
    if unknown:
        ap.error(f"--stages: unknown {sorted(unknown)}; choose from {', '.join(STAGES)}")
    # building stages: --threads BLAS / OpenMP threads (on a shared 2-core machine a second busy-waiting thread
    # tripled the CPU of a QR, spectral.orthonormal: --threads 2 only when the other work runs niced and the second
    # core is free). Scoring stages: one per process, as `serve` gives each worker; their parallelism is processes
    # (the Ray rows, the 2 service workers), and a request's small products on two threads only spin-wait
    def threads(n: int) -> dict:
        return {"BENTOML_HOME": str(store), **{v: str(n) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                     "MKL_NUM_THREADS")}}
    env, env1 = threads(a.threads), threads(1)
    me = [sys.executable, str(Path(__file__).resolve()), "--out", str(a.out)]
    ev = str(world / "events.parquet")
    rows: list[dict] = []

    def keep(row: dict) -> None:
        """Each finished stage's row is written at once: a run stopped part-way keeps the stages it finished."""
        rows.append(row)
        meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
                "cpus": os.cpu_count(), "load_1min_at_end": os.getloadavg()[0], "users": a.users, "items": a.items,
                "command": " ".join(sys.argv)}
        (a.out / a.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    paths = [sys.executable, str(ROOT / "bench" / "recommend_paths.py")]
    if "synth" in todo:
        keep(run("synth", CLI + ["data", "synth", "--out", str(world), "--users", str(a.users),
                                 "--items", str(a.items), "--format", "parquet"], env))
    if "validate" in todo:
        keep(run("validate", CLI + ["data", "validate", "--events", ev, "--items", str(world / "items.parquet"),
                                    "--users", str(world / "users.parquet"),
                                    "--store-stock", str(world / "store_stock.parquet")], env))
    if "validate-ids" in todo:  # the cost of catching redelivered rows when every row carries an id
        keep(run("events with an event_id per row: write", me + ["--stage", "ids-file"], env))
        keep(run("validate events with an event_id per row", CLI + ["data", "validate", "--events",
                                                                     str(work / "events_ids.parquet")], env))
    if "train-churn" in todo:
        keep(run("train churn", CLI + ["train", "churn", "--events", ev, "--horizon-days", "90"], env))
    for stage, label, extra in (("predict-churn", "predict churn, 1 process", []),
                                ("predict-churn-ray1", "predict churn, Ray 1 worker", ["--workers", "1"]),
                                ("predict-churn-ray2", "predict churn, Ray 2 workers", ["--workers", "2"])):
        if stage in todo:
            keep(run(label, CLI + ["predict", "churn", "--events", ev, "--as-of", AS_OF, "--horizon-days", "90",
                                   "--output", str(work / f"{stage}.csv")] + extra, env1))
    if "factors" in todo:
        keep(run(f"filter factors (top {K_EIG} eigenpairs)", me + ["--stage", "factors"], env))
    if "exact" in todo:
        keep(run("filter vs exact (sub-graph)", me + ["--stage", "exact"], env))
    if "ann" in todo:
        keep(run("ANN build + recall (1,000 users)", me + ["--stage", "ann"], env))
    if "adjacency" in todo:
        keep(run("graph filter's torch adjacency at full size (memory)", me + ["--stage", "adjacency"], env))
    if "tuning-cost" in todo:  # needs a stored recommender at full size (served-build)
        keep(run("one tuning setting, dense rows vs candidates", me + ["--stage", "tuning-cost"], env))
    if "recommender" in todo:
        keep(run("train recommender", CLI + ["train", "recommender", "--events", ev,
                                             "--items", str(world / "items.parquet")], env))
    if "served-build" in todo:  # the served model's one build on every event, default settings, saved with its index
        keep(run("served model: Recommender.build + save (default settings)",
                 paths + ["--register", str(world), "--home", str(store)], env))
    if "request" in todo:  # /recommend's model path on that version, in process: full scoring vs faiss candidates
        keep(run("request path at full size (in process)", paths + ["--store", str(store), "--recall-users", "300"],
                 env1))
    if "request-http" in todo:  # the same version behind `serve --workers 2`: req/s, p99 at half that, worker memory
        keep(run("/recommend over HTTP, 2 workers (max req/s, p99 at a quarter and half of it)",
                 [sys.executable, str(ROOT / "bench" / "service.py"), "--throughput", "--store", str(store),
                  "--world", str(world), "--items", str(a.items), "--seconds", "15", "--concurrency", "8",
                  "--loads", "0.25,0.5"], env1))  # no PSS sampling here: see `run`; the bench reads it after
    if "batch-vs-request" in todo:  # recommend's batched scorer vs one /recommend call per customer, in process
        keep(run("recommend: batched vs per-request (500 customers, in process)",
                 me + ["--stage", "batch-vs-request"], env1))
    stage_recommend_all(todo, store, work, env1, a.rec_users, keep)
    print_table(json.loads((a.out / a.json).read_text()))


def print_table(result: dict) -> None:
    """The Markdown table pasted in docs/BENCHMARKS.md (Scale), after the run's meta line."""
    print(f"\n{result['meta']}\n\n| stage | wall s | CPU s | CPU s, process tree | peak RSS (GB) | load 1-min (start, end) "
          "| rc | notes |\n|---|---:|---:|---:|---:|---|---:|---|")
    for r in result["rows"]:
        extra = {k: r[k] for k in ("peak_pss_gb", "users", "rows_written", "cpu_ms_per_user", "identical_to_1_process")
                 if k in r}
        notes = f"{extra} " if extra else ""
        if "users" not in extra:  # the stage's own last lines (a recommend-all stage's say what `extra` says)
            notes += " ".join(r["tail"])[-300:]
        print(f"| {r['stage']} | {r['seconds']} | {r['cpu_seconds']} | {r['tree_cpu_seconds']} | {r['peak_rss_gb']} | "
              f"{r['load'][0]}, {r['load'][1]} | {r['rc']} | {notes.replace('|', '/')} |")  # a stage's own table rows


if __name__ == "__main__":
    main()
