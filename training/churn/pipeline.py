"""Churn training: stacked earlier as-of windows for training, the latest labelled window for validation.

Validation as-of = the latest date whose label window [as_of, as_of + H) lies inside the events (or the
one given). Training windows are at as_of_val - H - k * step (k = 0, 1, ...), so no training label
overlaps the validation label window. The calibrator is fitted on the validation window (cross-fitted
ECE reported); RFM segment edges come from the validation population.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from omnidecide.models.churn import features as F
from omnidecide.models.calibration import fit_calibrator
from omnidecide.models.churn.model import ChurnModel, Scaler
from omnidecide.models.churn.net import ChurnEnsemble, ChurnNet
from omnidecide.models.churn.segments import rfm_edges, risk_tier, segment
from omnidecide.models.errors import InputError
from omnidecide.models.metrics import auc, classification_report, lift_by_decile, reliability_curve

@dataclass
class Config:
    horizon_days: int = 90
    n_bins: int = 26
    bin_days: int = 14
    max_windows: int = 8
    step_days: int = 14
    min_history_days: int = 28
    max_train_rows: int = 80_000
    max_customers: int = 200_000      # customers sampled before features (1M customers: 8 windows would need ~7 GB)
    hidden: int = 32
    epochs: int = 25
    patience: int = 3
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-5
    dropout: float = 0.1
    static_bins: int = 16             # piecewise-linear encoding of the static features (0: plain standardised)
    # wall-clock cap on the optimisation loop (all members); OMNIDECIDE_CHURN_FIT_SECONDS overrides it
    max_seconds: float = field(default_factory=lambda: float(os.environ.get("OMNIDECIDE_CHURN_FIT_SECONDS", 50)))
    members: int = 3                  # seeds averaged, as many as fit in max_seconds (large logs: fewer)
    spend_weight: float = 0.2
    seed: int = 0
    # A 32-unit LSTM gains little from intra-op threads, and on a shared 2-core box OpenMP spin-waits
    # made one epoch 10x slower with 2 threads than with 1 (measured): train single-threaded by default.
    threads: int = 1


@dataclass
class Labelled:
    window: F.Window
    churned: np.ndarray
    spend: np.ndarray


def labelled(prep: F.Prepared, as_of: float, cfg: Config) -> Labelled:
    w = F.window(prep, as_of, n_bins=cfg.n_bins, bin_days=cfg.bin_days)
    y, s = F.labels(prep, as_of, cfg.horizon_days, w.user_codes)
    return Labelled(w, y, s)


def training_as_ofs(prep: F.Prepared, val_as_of: float, cfg: Config) -> tuple[list[float], bool]:
    """Earlier as-of days whose labels end before validation starts; (days, labels_overlap_validation)."""
    step = cfg.step_days
    earliest = prep.first_day + cfg.min_history_days
    strict = [val_as_of - cfg.horizon_days - k * step for k in range(cfg.max_windows)]
    strict = [a for a in strict if a >= earliest]
    if strict:
        return strict, False
    # Short logs: fall back to windows whose labels overlap the validation period (reported in metrics).
    loose = [val_as_of - k * step for k in range(1, cfg.max_windows + 1)]
    loose = [a for a in loose if a >= earliest]
    if not loose:
        raise InputError(f"events span {int(prep.last_day - prep.first_day) + 1} days: not enough history for "
                         f"training windows before the validation as-of {prep.date(val_as_of).date()} "
                         f"(horizon {cfg.horizon_days} days); use a shorter --horizon-days or more history")
    return loose, True


def sample_customers(prep: F.Prepared, n: int, rng: np.random.Generator) -> F.Prepared:
    """`prep` restricted to `n` customers drawn at random (all of them when there are fewer): training and
    validation windows, calibration and RFM edges then cost O(n), whatever the customer base."""
    if len(prep.user_ids) <= n:
        return prep
    chosen = np.zeros(len(prep.user_ids), bool)
    chosen[rng.choice(len(prep.user_ids), n, replace=False)] = True
    return F.restrict(prep, chosen)


def _stack(parts: list[Labelled]) -> tuple[np.ndarray, ...]:
    return (np.concatenate([p.window.seq for p in parts]), np.concatenate([p.window.lengths for p in parts]),
            np.concatenate([p.window.static for p in parts]), np.concatenate([p.churned for p in parts]),
            np.concatenate([p.spend for p in parts]))


def fit(prep: F.Prepared, cfg: Config, val_as_of: float | None = None) -> tuple[ChurnModel, dict, dict]:
    """Train, calibrate, evaluate. Returns (model, metrics, info)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _fit(prep, cfg, val_as_of)
    finally:
        torch.set_num_threads(threads)


def _fit(prep: F.Prepared, cfg: Config, val_as_of: float | None) -> tuple[ChurnModel, dict, dict]:
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    val_as_of = F.default_as_of(prep, cfg.horizon_days) if val_as_of is None else val_as_of
    prep = sample_customers(prep, cfg.max_customers, rng)
    if val_as_of + cfg.horizon_days > prep.last_day + 1:
        raise InputError(f"--as-of {prep.date(val_as_of).date()}: its {cfg.horizon_days}-day label window ends after the "
                         f"last event ({prep.date(prep.last_day).date()}); the latest usable as-of is "
                         f"{prep.date(prep.last_day + 1 - cfg.horizon_days).date()}")
    as_ofs, overlap = training_as_ofs(prep, val_as_of, cfg)
    train_parts = [labelled(prep, a, cfg) for a in as_ofs]
    val = labelled(prep, val_as_of, cfg)
    seq, lengths, static, y, spend = _stack(train_parts)
    if len(y) > cfg.max_train_rows:
        keep = np.sort(rng.choice(len(y), cfg.max_train_rows, replace=False))
        seq, lengths, static, y, spend = seq[keep], lengths[keep], static[keep], y[keep], spend[keep]
    if y.all() or not y.any():
        raise InputError("training windows hold only one class (everyone churned or no one did); "
                         "use a different --horizon-days or more history")
    if val.churned.all() or not val.churned.any():  # nothing to stop early on or calibrate with (a TypeError later)
        who = "every one of them churned" if val.churned.all() else "none of them churned"
        raise InputError(f"the validation window (as-of {prep.date(val_as_of).date()}, the next {cfg.horizon_days} days) "
                         f"holds only one class: of its {len(val.churned)} customers {who}; the model is calibrated "
                         "there, so it needs both: use another --as-of or --horizon-days, or more history")
    t_features = time.perf_counter() - t0

    scaler = Scaler.fit(seq, lengths, static, cfg.static_bins)
    buy = (~y) & (spend > 0)
    log_spend = np.log(np.where(buy, spend, 1.0))
    mu = float(log_spend[buy].mean()) if buy.any() else 0.0
    sd = float(log_spend[buy].std() + 1e-3) if buy.any() else 1.0
    Xs, Xst = torch.from_numpy(scaler.seq(seq, lengths)), torch.from_numpy(scaler.static(static))
    L = torch.from_numpy(lengths)
    Y = torch.from_numpy(y.astype(np.float32))
    S = torch.from_numpy(((log_spend - mu) / sd).astype(np.float32))
    B = torch.from_numpy(buy)
    Vs, Vst = torch.from_numpy(scaler.seq(val.window.seq, val.window.lengths)), torch.from_numpy(scaler.static(val.window.static))
    VL, VY = torch.from_numpy(val.window.lengths), torch.from_numpy(val.churned.astype(np.float32))

    arch = {"n_seq": seq.shape[2], "n_static": scaler.n_static_out, "hidden": cfg.hidden, "dropout": cfg.dropout}
    data = (Xs, L, Xst, Y, S, B)
    vdata = (Vs, VL, Vst, VY, val.churned)
    t_loop = time.perf_counter()
    members, history = [], []
    for k in range(cfg.members):
        left = cfg.max_seconds - (time.perf_counter() - t_loop)
        if k and left < (time.perf_counter() - t_loop) / k:
            break  # not enough budget left for another member as long as the previous ones took
        member, hist = _train_member(arch, data, vdata, cfg, seed=cfg.seed * 1000 + k, deadline=t_loop + cfg.max_seconds)
        members.append(member)
        history.append(hist)
    net = ChurnEnsemble(members)
    net.eval()
    arch = {**arch, "members": len(members)}
    t_fit = time.perf_counter() - t_loop

    model = ChurnModel(net=net, scaler=scaler, calibrator=None, horizon_days=cfg.horizon_days,  # type: ignore[arg-type]
                       target_events=prep.target_events, spend_unit=prep.spend_unit, edges=rfm_edges(val.window.rfm),
                       n_bins=cfg.n_bins, bin_days=cfg.bin_days, spend_mu=mu, spend_sd=sd, arch=arch,
                       spend_range=(float(log_spend[buy].min()), float(log_spend[buy].max())) if buy.any() else (0.0, 0.0))
    vlogit, vlog_spend = model.raw(val.window)
    cal, cal_info = fit_calibrator(vlogit, val.churned.astype(float), seed=cfg.seed)
    model.calibrator = cal
    vbuy = (~val.churned) & (val.spend > 0)
    if vbuy.any():
        # ratio of sums (robust to tiny predictions), within a sane range
        model.smear = float(np.clip(val.spend[vbuy].sum() / np.exp(model.clip_log_spend(vlog_spend[vbuy])).sum(), 0.1, 10))
    p, expected = model.predict_window(val.window)
    report = classification_report(val.churned, cal_info["cross_fitted_prob"])
    metrics = {
        "val_auc": report["auc"], "val_ap": report["ap"], "val_brier": report["brier"], "val_ece": report["ece"],
        "val_auc_raw": auc(val.churned, vlogit), "val_churn_rate": float(val.churned.mean()),
        "val_customers": int(len(val.churned)), "train_rows": int(len(y)), "train_windows": len(as_ofs),
        "epochs": sum(len(h) for h in history), "members": len(history), "train_seconds": time.perf_counter() - t0, "feature_seconds": t_features,
        "fit_seconds": t_fit, "val_spend_actual": float(val.spend.sum()), "val_spend_expected": float(expected.sum()),
        "labels_overlap_validation": overlap,
    }
    info = {
        "figures": validation_figures(val, cal_info["cross_fitted_prob"], model.edges),
        "validation_as_of": str(prep.date(val_as_of).date()),
        "training_as_ofs": [str(prep.date(a).date()) for a in as_ofs],
        "calibration": cal.method, "history": history, "target_events": list(prep.target_events),
        "spend_unit": prep.spend_unit, "torch_threads": cfg.threads, "cpu_count": os.cpu_count(),
    }
    return model, metrics, info


def validation_figures(val, prob: np.ndarray, edges: dict) -> dict:
    """What the version's report draws, on the validation customers (cross-fitted calibrated probabilities): the
    calibration curve, the score histogram per risk tier, the lift by decile and the RFM segment sizes."""
    y = val.churned.astype(float)
    tiers = risk_tier(prob)
    bins = np.linspace(0.0, 1.0, 21)
    return {"reliability": reliability_curve(y, prob), "lift": lift_by_decile(y, prob), "score_bins": bins.tolist(),
            "score_hist": {t: np.histogram(prob[tiers == t], bins)[0].tolist() for t in ("high", "medium", "low")},
            "segments": pd.Series(segment(val.window.rfm, edges)).value_counts().to_dict()}


def _train_member(arch: dict, data: tuple, vdata: tuple, cfg: Config, seed: int, deadline: float) -> tuple[ChurnNet, list]:
    """One network, early-stopped on validation AUC."""
    Xs, L, Xst, Y, S, B = data
    Vs, VL, Vst, VY, vy = vdata
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ChurnNet(**arch)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bce, mse = nn.BCEWithLogitsLoss(), nn.MSELoss(reduction="none")
    best, best_state, bad, history = np.inf, None, 0, []
    batch = int(np.clip(len(Y) // 32, 64, cfg.batch_size))  # small logs: smaller batches, more steps per epoch
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.from_numpy(rng.permutation(len(Y)))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            logit, sp = net(Xs[idx], L[idx], Xst[idx])
            m = B[idx].float()
            loss = bce(logit, Y[idx]) + cfg.spend_weight * (mse(sp, S[idx]) * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
        net.eval()
        with torch.no_grad():
            vl = np.concatenate([net(Vs[i:i + 8192], VL[i:i + 8192], Vst[i:i + 8192])[0].numpy()
                                 for i in range(0, len(VY), 8192)])
        vauc = auc(vy, vl)
        history.append({"epoch": epoch + 1, "val_bce": float(bce(torch.from_numpy(vl), VY)), "val_auc": vauc})
        # Early stopping on ranking (AUC): the churn base rate drifts between the earlier training windows
        # and validation, which the calibrator absorbs afterwards but which would mislead a log-loss stop.
        if -vauc < best - 1e-4:
            best, bad = -vauc, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        if bad >= cfg.patience or time.perf_counter() > deadline:
            break
    net.load_state_dict(best_state)
    return net.eval(), history


def evaluate(model: ChurnModel, prep: F.Prepared, as_of: float) -> tuple[dict, pd.DataFrame]:
    """Metrics of a fitted model at a later as-of (labels from [as_of, as_of + H))."""
    w = F.window(prep, as_of, n_bins=model.n_bins, bin_days=model.bin_days)
    y, spend = F.labels(prep, as_of, model.horizon_days, w.user_codes)
    p, expected = model.predict_window(w)
    return classification_report(y, p), pd.DataFrame({"user_id": w.rfm["user_id"], "y": y, "p": p, "spend": spend,
                                                      "expected_spend": expected})
