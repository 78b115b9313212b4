"""The fitted churn model as one object: network, feature scaling, calibrator, spend smearing, RFM edges.

`score` turns an events frame into the CRM table (user_id, churn_probability, risk_tier, segment,
expected_spend, reason). Saved as two files: `churn.pt` (weights, tensors) and `churn.json` (the rest).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from omnidecide.models.churn import features as F
from omnidecide.models.calibration import Calibrator
from omnidecide.models.churn.net import ChurnEnsemble
from omnidecide.models.churn.segments import reasons, risk_tier, segment
from omnidecide.models.errors import InputError

SHARD_CUSTOMERS = 100_000  # customers scored at a time (their windows: ~200 MB)
OUTPUT_COLUMNS = ["user_id", "churn_probability", "risk_tier", "segment", "expected_spend", "reason"]


@dataclass
class Scaler:
    """Standardises sequence steps and static features; optionally adds a piecewise-linear encoding of the
    static features (Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular Deep Learning"):
    each standardised feature z also becomes K ramps clip((z - e_k) / (e_k+1 - e_k), 0, 1) between its
    training quantiles e_0..e_K, so the network can bend each RFM statistic's effect without having to
    learn the bends from a single linear input."""

    seq_mean: np.ndarray
    seq_std: np.ndarray
    static_mean: np.ndarray
    static_std: np.ndarray
    static_edges: list[np.ndarray] | None = None  # per static feature, distinct quantile edges (standardised scale)

    @classmethod
    def fit(cls, seq: np.ndarray, lengths: np.ndarray, static: np.ndarray, static_bins: int = 0) -> "Scaler":
        real = np.arange(seq.shape[1])[None, :] < lengths[:, None]
        steps = seq[real]
        out = cls(steps.mean(0), steps.std(0) + 1e-3, static.mean(0), static.std(0) + 1e-3)
        if static_bins > 1:
            z = (static - out.static_mean) / out.static_std
            q = np.linspace(0, 1, static_bins + 1)
            out.static_edges = [np.unique(np.quantile(z[:, j], q)).astype(np.float32) for j in range(z.shape[1])]
        return out

    @property
    def n_static_out(self) -> int:
        """Width of `static(...)`: the standardised features plus their ramps."""
        return len(self.static_mean) + sum(max(len(e) - 1, 0) for e in self.static_edges or [])

    def seq(self, seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        out = (seq - self.seq_mean) / self.seq_std
        out[np.arange(seq.shape[1])[None, :] >= lengths[:, None]] = 0.0
        return out.astype(np.float32)

    def static(self, static: np.ndarray) -> np.ndarray:
        z = ((static - self.static_mean) / self.static_std).astype(np.float32)
        if not self.static_edges:
            return z
        ramps = [np.clip((z[:, j:j + 1] - e[:-1]) / (e[1:] - e[:-1]), 0.0, 1.0)
                 for j, e in enumerate(self.static_edges) if len(e) > 1]
        return np.concatenate([z, *ramps], axis=1).astype(np.float32)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k).tolist() for k in ("seq_mean", "seq_std", "static_mean", "static_std")}
        d["static_edges"] = None if self.static_edges is None else [e.tolist() for e in self.static_edges]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        edges = d.get("static_edges")
        return cls(*(np.asarray(d[k], dtype=np.float32) for k in ("seq_mean", "seq_std", "static_mean", "static_std")),
                   static_edges=None if edges is None else [np.asarray(e, dtype=np.float32) for e in edges])


@dataclass
class ChurnModel:
    net: ChurnEnsemble
    scaler: Scaler
    calibrator: Calibrator
    horizon_days: int
    target_events: tuple[str, ...]
    spend_unit: str
    edges: dict
    n_bins: int = 26
    bin_days: int = 14
    spend_mu: float = 0.0
    spend_sd: float = 1.0
    smear: float = 1.0
    arch: dict = field(default_factory=dict)
    spend_range: tuple[float, float] = (0.0, 30.0)  # log spend seen in training: predictions are clipped to it

    def clip_log_spend(self, log_spend: np.ndarray) -> np.ndarray:
        return np.clip(log_spend, self.spend_range[0], self.spend_range[1])

    @property
    def noun(self) -> str:
        return "purchase" if self.target_events == ("purchase",) else "activity"

    def raw(self, w: F.Window, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(churn logit, predicted log spend if they buy) per customer in the window."""
        self.net.eval()
        seq, static = self.scaler.seq(w.seq, w.lengths), self.scaler.static(w.static)
        logits, spend = [], []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # see training.churn.pipeline.Config.threads
        with torch.no_grad():
            for s in range(0, len(seq), batch):
                lo, sp = self.net(torch.from_numpy(seq[s:s + batch]), torch.from_numpy(w.lengths[s:s + batch]),
                                  torch.from_numpy(static[s:s + batch]))
                logits.append(lo.numpy())
                spend.append(sp.numpy())
        torch.set_num_threads(threads)
        if not logits:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(logits).astype(float), np.concatenate(spend).astype(float) * self.spend_sd + self.spend_mu

    def predict_window(self, w: F.Window) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated churn probability, expected spend in the horizon)."""
        logit, log_spend = self.raw(w)
        p = self.calibrator(logit)
        expected = (1 - p) * np.exp(self.clip_log_spend(log_spend)) * self.smear
        return p, expected

    def score(self, events: pd.DataFrame, as_of: str | pd.Timestamp, shard: int = SHARD_CUSTOMERS) -> pd.DataFrame:
        """The CRM table: one row per customer with any event before `as_of`; built `shard` customers at a time
        (the same rows in the same order as all at once, in a bounded amount of memory)."""
        prep = F.prepare(events, self.target_events)
        day = prep.day(as_of)
        parts = [self.table(F.window(part, day, n_bins=self.n_bins, bin_days=self.bin_days))
                 for part in F.shards(prep, shard) if len(part.t) and part.t[0] < day]
        if not parts:
            raise InputError(f"no events before as-of {pd.Timestamp(as_of).date()}")
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def table(self, w: F.Window) -> pd.DataFrame:
        p, expected = self.predict_window(w)
        return pd.DataFrame({
            "user_id": w.rfm["user_id"].to_numpy(),
            "churn_probability": np.round(p, 4),
            "risk_tier": risk_tier(p),
            "segment": segment(w.rfm, self.edges),
            "expected_spend": np.round(expected, 2),
            "reason": reasons(w.rfm, p, self.noun),
        }, columns=OUTPUT_COLUMNS)

    # --- persistence ------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        torch.save(self.net.state_dict(), folder / "churn.pt")
        meta = {
            "arch": self.arch, "scaler": self.scaler.to_dict(), "calibrator": self.calibrator.to_dict(),
            "horizon_days": self.horizon_days, "target_events": list(self.target_events), "spend_unit": self.spend_unit,
            "edges": self.edges, "n_bins": self.n_bins, "bin_days": self.bin_days,
            "spend_mu": self.spend_mu, "spend_sd": self.spend_sd, "smear": self.smear,
            "spend_range": list(self.spend_range),
        }
        (folder / "churn.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: Path) -> "ChurnModel":
        folder = Path(folder)
        meta = json.loads((folder / "churn.json").read_text())
        arch = dict(meta["arch"])
        net = ChurnEnsemble(n_seq=arch["n_seq"], n_static=arch["n_static"], hidden=arch["hidden"],
                            members_n=arch.get("members", 1))
        net.load_state_dict(torch.load(folder / "churn.pt", map_location="cpu", weights_only=True))
        net.eval()
        return cls(net=net, scaler=Scaler.from_dict(meta["scaler"]), calibrator=Calibrator.from_dict(meta["calibrator"]),
                   horizon_days=int(meta["horizon_days"]), target_events=tuple(meta["target_events"]),
                   spend_unit=meta["spend_unit"], edges=meta["edges"], n_bins=int(meta["n_bins"]),
                   bin_days=int(meta["bin_days"]), spend_mu=meta["spend_mu"], spend_sd=meta["spend_sd"],
                   smear=meta["smear"], arch=meta["arch"], spend_range=tuple(meta["spend_range"]))
