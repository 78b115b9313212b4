"""Churn benchmark (issue C): LSTM vs LightGBM-on-RFM vs recency-only vs BG/NBD, in one run.

    .venv/bin/python bench/churn.py [--datasets synth,cdnow,ml-100k] [--synth-users 25000] [--out reports/churn.md]

Protocol, the same for every data set: test as-of = the latest date whose H-day label window lies inside
the log; every model is fitted on events strictly before the test as-of only (the LSTM's own pipeline:
stacked earlier windows for training, the window at test as-of - H for validation/calibration;
LightGBM gets the very same training windows and validation window; recency-only is Platt on log
recency fitted on the validation window; BG/NBD is fitted by maximum likelihood on the test population's
history (no labels) and scores P(no purchase in the horizon)). Metrics on the test window.

Data sets:
- synth: `training.synth.generate(users, seed=7)`; also AUC against the planted truth (churn_date < as_of + H).
- cdnow: the CDNOW master transaction log (23,570 customers who first bought in Q1 1997, purchases to
  June 1998; Fader & Hardie's canonical BTYD data set) as shipped inside the PyPI wheel
  `lifetimes==0.11.3` (`lifetimes/datasets/CDNOW_master.txt`). Fetched with `pip download --no-deps` into
  the user cache, wheel and file sha256-checked, never installed, never committed, never a runtime
  dependency. Item-less purchase log: user, date, quantity (CDs), amount (dollars).
- ml-100k: rating activity as the activity log (churn = no rating in the horizon; H = 30 as the log spans
  7 months).

Speed: `train()` end to end on the synth world (load + features + fit), scoring throughput on 100,000
customers (the synth world's customers replicated under new ids), on this machine's CPU.
BG/NBD is implemented here (Fader, Hardie & Lee 2005, the closed-form likelihood), not imported.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="omnidecide-bench-store-"))

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import platformdirs  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import minimize  # noqa: E402
from scipy.special import gammaln  # noqa: E402

from omnidecide.models.churn import features as F  # noqa: E402
from omnidecide.models.calibration import Calibrator, fit_platt  # noqa: E402
from omnidecide.models.metrics import auc, classification_report  # noqa: E402
from omnidecide.training.churn.pipeline import Config, evaluate, fit, labelled, training_as_ofs  # noqa: E402
from omnidecide.store.io import load  # noqa: E402

LIFETIMES_WHEEL = "lifetimes==0.11.3"
LIFETIMES_WHEEL_SHA256 = "261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8"
CDNOW_MASTER_SHA256 = "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef"
RFM_COLUMNS = ["recency_days", "frequency", "monetary", "tenure_days", "mean_gap_days", "std_gap_days", "last_gap_days"]
LGBM_PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 50, "feature_fraction": 0.9,
               "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1, "num_threads": 2}


def rfm_frame(w: F.Window) -> pd.DataFrame:
    """LightGBM's RFM features: the RFM columns plus average order value."""
    return w.rfm[RFM_COLUMNS].assign(avg_spend=lambda d: d["monetary"] / d["frequency"].clip(lower=1))


def cache() -> Path:
    d = Path(platformdirs.user_cache_dir("omnidecide")) / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


# --- data sets ---------------------------------------------------------------------------------------

def cdnow_events() -> pd.DataFrame:
    """CDNOW master log from the lifetimes wheel (checksummed) as canonical item-less purchase events."""
    wheel_dir = cache() / "lifetimes-wheel"
    wheels = sorted(wheel_dir.glob("[Ll]ifetimes-0.11.3-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", LIFETIMES_WHEEL, "-d", str(wheel_dir)],
                       check=True)
        wheels = sorted(wheel_dir.glob("[Ll]ifetimes-0.11.3-*.whl"))
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != LIFETIMES_WHEEL_SHA256:
        raise SystemExit(f"{wheels[0]}: sha256 {digest} != pinned {LIFETIMES_WHEEL_SHA256}")
    raw = zipfile.ZipFile(wheels[0]).read("lifetimes/datasets/CDNOW_master.txt")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CDNOW_MASTER_SHA256:
        raise SystemExit(f"CDNOW_master.txt: sha256 {digest} != pinned {CDNOW_MASTER_SHA256}")
    rows = [line.split() for line in raw.decode().splitlines()[1:] if line.strip()]
    df = pd.DataFrame(rows, columns=["user_id", "date", "quantity", "amount"])
    return pd.DataFrame({
        "user_id": df["user_id"], "item_id": pd.NA, "timestamp": pd.to_datetime(df["date"], format="%Y%m%d"),
        "event": "purchase", "quantity": df["quantity"].astype(float), "amount": df["amount"].astype(float),
    })


def synth_world(users: int, seed: int = 7) -> Path:
    from omnidecide.training.synth import generate

    src = Path(generate.__code__.co_filename).parent  # the generator's sources name the cache: a changed generator
    made_by = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(src.glob("*.py")))).hexdigest()[:12]  # is not reused
    out = cache() / f"synth-{users}-{seed}-{made_by}"
    if not (out / "truth_users.csv").exists():
        generate(out, n_users=users, seed=seed)
    return out


def ml100k_events() -> pd.DataFrame:
    from omnidecide.training import ml100k

    out = cache() / "ml-100k"
    if not (out / "events.csv").exists():
        ml100k.fetch(out)
    return load(out / "events.csv", "events", write=False).data


# --- baselines -------------------------------------------------------------------------------------

def lgbm_rfm(prep: F.Prepared, cfg: Config, val_as_of: float, test_as_of: float, seed: int) -> np.ndarray:
    """LightGBM on RFM features, same training windows and validation window as the LSTM; Platt-calibrated."""
    as_ofs, _ = training_as_ofs(prep, val_as_of, cfg)
    parts = [labelled(prep, a, cfg) for a in as_ofs]
    X = pd.concat([rfm_frame(p.window) for p in parts], ignore_index=True)
    y = np.concatenate([p.churned for p in parts]).astype(int)
    val = labelled(prep, val_as_of, cfg)
    Xv = rfm_frame(val.window)
    booster = lgb.train({**LGBM_PARAMS, "seed": seed}, lgb.Dataset(X, y), num_boost_round=1000, valid_sets=[lgb.Dataset(Xv, val.churned.astype(int))],
                        callbacks=[lgb.early_stopping(50, verbose=False)])
    logit = lambda d: booster.predict(d, raw_score=True)  # noqa: E731
    a, b = fit_platt(logit(Xv), val.churned.astype(float))
    return Calibrator(a, b)(logit(rfm_frame(F.window(prep, test_as_of, n_bins=cfg.n_bins, bin_days=cfg.bin_days))))


def lgbm_rfm_latest(prep: F.Prepared, cfg: Config, val_as_of: float, test_as_of: float, seed: int) -> np.ndarray:
    """A second, stronger-on-drift LightGBM-RFM: fitted on the latest labelled window only (80% of its
    customers; early stopping and Platt on the other 20%), so no shift between training and test windows."""
    val = labelled(prep, val_as_of, cfg)
    X = rfm_frame(val.window)
    y = val.churned.astype(int)
    hold = np.random.default_rng(seed).random(len(y)) < 0.2
    booster = lgb.train({**LGBM_PARAMS, "seed": seed}, lgb.Dataset(X[~hold], y[~hold]), num_boost_round=1000,
                        valid_sets=[lgb.Dataset(X[hold], y[hold])], callbacks=[lgb.early_stopping(50, verbose=False)])
    a, b = fit_platt(booster.predict(X[hold], raw_score=True), y[hold].astype(float))
    Xt = rfm_frame(F.window(prep, test_as_of, n_bins=cfg.n_bins, bin_days=cfg.bin_days))
    return Calibrator(a, b)(booster.predict(Xt, raw_score=True))


def recency_only(prep: F.Prepared, cfg: Config, val_as_of: float, test_as_of: float) -> np.ndarray:
    val = labelled(prep, val_as_of, cfg)
    a, b = fit_platt(np.log1p(val.window.rfm["recency_days"].to_numpy()), val.churned.astype(float))
    test = F.window(prep, test_as_of, n_bins=cfg.n_bins, bin_days=cfg.bin_days)
    return Calibrator(a, b)(np.log1p(test.rfm["recency_days"].to_numpy()))


def bgnbd_summary(w: F.Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x repeat purchase days, t_x, T) in weeks from each customer's first purchase (first event if none)."""
    r = w.rfm
    x = np.maximum(r["frequency"].to_numpy() - 1, 0)
    first = r["tenure_days"].to_numpy()  # first event; equals first purchase on purchase logs
    span = np.where(x > 0, np.nan_to_num(r["mean_gap_days"].to_numpy()) * x, 0.0)  # last - first purchase day
    T = np.maximum(np.where(r["frequency"] > 0, r["recency_days"].to_numpy() + span, first), 1e-3) / 7.0
    return x.astype(float), span / 7.0, T


def bgnbd_fit(x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    def nll(logp: np.ndarray) -> float:
        r, alpha, a, b = np.exp(logp)
        A1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        A2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
        A3 = -(r + x) * np.log(alpha + T)
        A4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + tx), -np.inf)
        return -float(np.sum(A1 + A2 + np.logaddexp(A3, A4))) / len(x)

    res = minimize(nll, np.log([0.5, 5.0, 0.5, 2.0]), method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-9})
    return np.exp(res.x)


def bgnbd_p_no_purchase(params: np.ndarray, x, tx, T, horizon_weeks: float) -> np.ndarray:
    """P(no purchase in (T, T + t]) = (1 - P(alive)) + P(alive) * ((alpha + T) / (alpha + T + t))^(r + x)."""
    r, alpha, a, b = params
    odds = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + tx)) ** (r + x), 0.0)
    p_alive = 1.0 / (1.0 + odds)
    return (1 - p_alive) + p_alive * ((alpha + T) / (alpha + T + horizon_weeks)) ** (r + x)


# --- one data set ----------------------------------------------------------------------------------

def run_dataset(name: str, events: pd.DataFrame, horizon: int, seed: int, truth: pd.DataFrame | None = None) -> dict:
    prep_all = F.prepare(events)
    test_as_of = F.default_as_of(prep_all, horizon)
    cut = prep_all.date(test_as_of)
    prep = F.prepare(events[pd.to_datetime(events["timestamp"]) < cut], prep_all.target_events)
    test_as_of_tr = prep.day(cut)
    cfg = Config(horizon_days=horizon, seed=seed)
    val_as_of = test_as_of_tr - horizon
    rows, scores = {}, {}

    t = time.perf_counter()
    model, metrics, info = fit(prep, cfg, val_as_of)
    lstm_fit = time.perf_counter() - t
    t = time.perf_counter()
    rep, frame = evaluate(model, prep_all, test_as_of)
    lstm_score = time.perf_counter() - t
    y = frame["y"].to_numpy()
    rows["LSTM (ours)"] = {**rep, "fit_s": lstm_fit, "score_s": lstm_score}
    scores["LSTM (ours)"] = frame["p"].to_numpy()

    t = time.perf_counter()
    p = lgbm_rfm(prep, cfg, val_as_of, test_as_of_tr, seed)
    rows["LightGBM-RFM"] = {**classification_report(y, p), "fit_s": time.perf_counter() - t, "score_s": float("nan")}
    scores["LightGBM-RFM"] = p

    t = time.perf_counter()
    p = lgbm_rfm_latest(prep, cfg, val_as_of, test_as_of_tr, seed)
    rows["LightGBM-RFM, latest window only"] = {**classification_report(y, p), "fit_s": time.perf_counter() - t,
                                                "score_s": float("nan")}
    scores["LightGBM-RFM, latest window only"] = p

    t = time.perf_counter()
    p = recency_only(prep, cfg, val_as_of, test_as_of_tr)
    rows["recency-only"] = {**classification_report(y, p), "fit_s": time.perf_counter() - t, "score_s": float("nan")}
    scores["recency-only"] = p

    t = time.perf_counter()
    w = F.window(prep_all, test_as_of, n_bins=cfg.n_bins, bin_days=cfg.bin_days)
    x, tx, T = bgnbd_summary(w)
    params = bgnbd_fit(x, tx, T)
    p = bgnbd_p_no_purchase(params, x, tx, T, horizon / 7.0)
    rows["BG/NBD"] = {**classification_report(y, p), "fit_s": time.perf_counter() - t, "score_s": float("nan")}
    scores["BG/NBD"] = p

    if truth is not None:
        churn_date = pd.to_datetime(truth.set_index("user_id")["churn_date"].replace("", pd.NA))
        planted = (churn_date.reindex(frame["user_id"]) < cut + pd.Timedelta(days=horizon)).fillna(False).to_numpy()
        for k in rows:
            rows[k]["auc_vs_planted"] = auc(planted, scores[k])

    spend = {"actual_total": float(frame["spend"].sum()), "expected_total": float(frame["expected_spend"].sum()),
             "spearman": float(pd.Series(frame["expected_spend"]).corr(pd.Series(frame["spend"]), method="spearman"))}
    lift = (rows["LSTM (ours)"]["auc"] - 0.5) / (rows["LightGBM-RFM"]["auc"] - 0.5)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(200):  # paired bootstrap over customers: how sure is the ratio?
        i = rng.integers(0, len(y), len(y))
        boot.append((auc(y[i], scores["LSTM (ours)"][i]) - 0.5) / (auc(y[i], scores["LightGBM-RFM"][i]) - 0.5))
    lift_ci = np.nanpercentile(boot, [2.5, 97.5]).tolist()
    best_lgbm = max(rows["LightGBM-RFM"]["auc"], rows["LightGBM-RFM, latest window only"]["auc"])
    lift_best = (rows["LSTM (ours)"]["auc"] - 0.5) / (best_lgbm - 0.5)
    return {
        "name": name, "horizon": horizon, "test_as_of": str(cut.date()), "validation_as_of": info["validation_as_of"],
        "training_as_ofs": info["training_as_ofs"], "customers": int(len(y)), "churn_rate": float(y.mean()),
        "spend_unit": prep_all.spend_unit, "target_events": list(prep_all.target_events), "rows": rows,
        "lstm_val": {k: metrics[k] for k in ("val_auc", "val_ece", "epochs", "members", "train_rows")}, "calibration": info["calibration"],
        "lift_vs_lgbm": lift, "lift_ci95": lift_ci, "lift_vs_best_lgbm": lift_best, "spend": spend, "bgnbd_params": params.tolist(),
    }


def speed(world: Path, seed: int) -> dict:
    """train() end to end on the synth world, and scoring throughput on 100k customers."""
    from omnidecide.training.churn import train
    from omnidecide.store import registry
    from omnidecide.models.churn.model import ChurnModel

    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    tag = train(world / "events.csv", horizon_days=90, seed=seed)
    train_s = time.perf_counter() - t
    meta = registry.get("churn", tag).info.metadata
    t = time.perf_counter()
    events = load(world / "events.csv", "events", write=False).data
    load_s = time.perf_counter() - t
    model = ChurnModel.load(registry.path("churn", tag))
    # 100,000 customers: the world's customers replicated under new ids, built from codes (memory-light)
    cols = ["user_id", "item_id", "timestamp", "event", "quantity", "amount", "channel"]
    base = events[cols]
    u_codes, u_names = pd.factorize(base["user_id"])
    n_users = len(u_names)
    reps = int(np.ceil(100_000 / n_users))
    ids = np.concatenate([np.asarray(u_names, dtype=object) + f"_r{k}" for k in range(reps)])
    codes = np.concatenate([u_codes + k * n_users for k in range(reps)])
    keep = codes < 100_000
    big = pd.DataFrame({"user_id": pd.Categorical.from_codes(codes[keep], categories=ids)})
    for c in cols[1:]:
        col = base[c].astype("category") if c in ("item_id", "event", "channel") else base[c]
        tiled = pd.concat([col] * reps, ignore_index=True)
        big[c] = tiled[keep].reset_index(drop=True)
    del base
    t = time.perf_counter()
    table = model.score(big, "2026-07-01")
    score_s = time.perf_counter() - t
    return {"customers": int(events["user_id"].nunique()), "events": int(len(events)), "train_s": train_s, "load_s": load_s,
            "train_feature_s": meta["metrics"]["feature_seconds"], "train_fit_s": meta["metrics"]["fit_seconds"],
            "train_rows": meta["metrics"]["train_rows"], "epochs": meta["metrics"]["epochs"],
            "scored_customers": int(len(table)), "scored_events": int(len(big)), "score_s": score_s,
            "members": meta["metrics"]["members"], "loadavg": [load_before, os.getloadavg()[0]]}


def render(results: list[dict], spd: dict | None, argv: list[str]) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `{' '.join(['.venv/bin/python', 'bench/churn.py', *argv])}` "
             f"on {os.cpu_count()} CPU cores ({cpu}), "
             f"torch {torch.__version__} (CPU, 1 thread for the LSTM), LightGBM {lgb.__version__}, no GPU. "
             f"Seed 0 for every model.", ""]
    for r in results:
        lines += [f"**{r['name']}** — H = {r['horizon']} days; test as-of {r['test_as_of']} ({r['customers']} customers with "
                  f"history, churn rate {r['churn_rate']:.3f}; target events {', '.join(r['target_events'])}); validation as-of "
                  f"{r['validation_as_of']}; {len(r['training_as_ofs'])} training windows {r['training_as_ofs'][-1]} … "
                  f"{r['training_as_ofs'][0]} ({r['lstm_val']['train_rows']:,} rows). LSTM: {r['lstm_val']['members']} "
                  f"member(s), {r['lstm_val']['epochs']} epochs; calibration {r['calibration']}, validation ECE "
                  f"(cross-fitted) {r['lstm_val']['val_ece']:.4f}.", ""]
        has_truth = "auc_vs_planted" in r["rows"]["LSTM (ours)"]
        head = "| model | AUC | AP | Brier | ECE |" + (" AUC vs planted truth |" if has_truth else "") + " fit s | score s |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for k, m in r["rows"].items():
            cells = [f"{m['auc']:.4f}", f"{m['ap']:.4f}", f"{m['brier']:.4f}", f"{m['ece']:.4f}"]
            if has_truth:
                cells.append(f"{m['auc_vs_planted']:.4f}")
            cells += [f"{m['fit_s']:.1f}", "—" if np.isnan(m["score_s"]) else f"{m['score_s']:.1f}"]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        verdict = "met" if r["lift_vs_lgbm"] >= 1.05 else "**missed**"
        lines += ["", f"(AUC−0.5) LSTM / LightGBM-RFM = **{r['lift_vs_lgbm']:.3f}** (paired bootstrap 95% interval "
                  f"{r['lift_ci95'][0]:.3f}–{r['lift_ci95'][1]:.3f}; target ≥ 1.05: {verdict}); against the better of the two "
                  f"LightGBM variants: {r['lift_vs_best_lgbm']:.3f}. "
                  f"Expected spend ({r['spend_unit']}): predicted total {r['spend']['expected_total']:,.0f} vs actual "
                  f"{r['spend']['actual_total']:,.0f}, Spearman {r['spend']['spearman']:.3f}.", ""]
    if spd:
        lines += ["**Speed** (synthetic world, this machine): "
                  f"`train()` end to end on {spd['customers']:,} customers / {spd['events']:,} events: **{spd['train_s']:.0f} s** "
                  f"(CSV load + validation {spd['load_s']:.0f} s, features {spd['train_feature_s']:.0f} s, "
                  f"fit {spd['train_fit_s']:.0f} s over {spd['epochs']} epochs on {spd['train_rows']:,} rows; target ≤ 120 s). "
                  f"Scoring {spd['scored_customers']:,} customers ({spd['scored_events']:,} events, frame in memory): "
                  f"**{spd['score_s']:.1f} s** (target ≤ 30 s; {spd['members']}-member model). 1-minute load average on this shared "
                  f"2-core machine {spd['loadavg'][0]:.1f} before and {spd['loadavg'][1]:.1f} after (other jobs were running: "
                  f"above 2 means the timings are inflated). GPU: none lent to this task, so no GPU time.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="synth,cdnow,ml-100k")
    ap.add_argument("--synth-users", type=int, default=25_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "churn.md")
    args = ap.parse_args()
    argv = sys.argv[1:]
    results, world = [], None
    for ds in args.datasets.split(","):
        t = time.perf_counter()
        if ds == "synth":
            world = synth_world(args.synth_users)
            ev = load(world / "events.csv", "events", write=False).data
            res = run_dataset(f"Synthetic world ({args.synth_users:,} users, seed 7)", ev, 90, args.seed,
                              pd.read_csv(world / "truth_users.csv", dtype=str, keep_default_na=False))
        elif ds == "cdnow":
            res = run_dataset("CDNOW (real purchase log, item-less)", cdnow_events(), 90, args.seed)
        elif ds == "ml-100k":
            res = run_dataset("ML-100K (rating activity)", ml100k_events(), 30, args.seed)
        else:
            raise SystemExit(f"unknown data set {ds!r}")
        print(f"{ds}: {time.perf_counter() - t:.0f} s, lift {res['lift_vs_lgbm']:.3f}", file=sys.stderr)
        results.append(res)
    spd = None if args.no_speed or world is None else speed(world, args.seed)
    text = render(results, spd, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"results": results, "speed": spd}, indent=1, default=float))
    print(text)


if __name__ == "__main__":
    main()
