"""The saved allocator: fitted response (point + bootstrap draws), the history it came from, the residual agent.

This module is the fitted state and its persistence; planning a request on it is models/allocator/planning.py
(`Allocator.plan` delegates there), actuals and updating are models/allocator/actuals.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.models.allocator import planning
from omnidecide.models.allocator.actuals import Updating  # noqa: F401  (re-exported: the planner's update rules)
from omnidecide.models.allocator.constraints import Constraints
from omnidecide.models.allocator.curves import Curves, Ensemble
from omnidecide.models.allocator.env import AllocatorEnv
from omnidecide.models.allocator.mmm import History, MMMParams, horizon_curves, peak_flags
from omnidecide.models.allocator.planning import RESERVE, PlanResult  # noqa: F401  (re-exported)
from omnidecide.models.response import geometric_adstock


@dataclass
class Allocator:
    params: MMMParams
    samples: list[MMMParams]
    history: History
    alpha: float = 0.5
    worlds: list[MMMParams] = field(default_factory=list)  # planning ensemble: widened bootstrap draws
    policy: object | None = None  # stable_baselines3 model (or anything with .predict(obs, deterministic=True))
    info: dict = field(default_factory=dict)
    # caches of derived constants (never saved): adstock at the end of the history per planning world; calendars
    _end_stock: list = field(default_factory=list, init=False, repr=False, compare=False)
    _calendars: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def channels(self) -> list[str]:
        return self.history.channels

    # --- persistence ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        h = self.history
        np.savez(folder / "history.npz", dates=np.array(h.dates.strftime("%Y-%m-%d"), dtype="U10"), revenue=h.revenue, spend=h.spend,
                 controls=h.controls)
        meta = {"params": self.params.to_dict(), "samples": [s.to_dict() for s in self.samples],
                "worlds": [w.to_dict() for w in self.worlds], "channels": h.channels,
                "control_names": h.control_names, "step_days": h.step_days, "alpha": self.alpha, "info": self.info}
        (folder / "allocator.json").write_text(json.dumps(meta, indent=1, default=float))
        if self.policy is not None:
            self.policy.save(folder / "agent.zip")

    @classmethod
    def load(cls, folder: Path) -> "Allocator":
        folder = Path(folder)
        meta = json.loads((folder / "allocator.json").read_text())
        z = np.load(folder / "history.npz", allow_pickle=False)
        h = History(dates=pd.DatetimeIndex(pd.to_datetime(z["dates"])), revenue=z["revenue"], spend=z["spend"],
                    channels=meta["channels"], controls=z["controls"], control_names=meta["control_names"],
                    step_days=int(meta["step_days"]))
        policy = None
        if (folder / "agent.zip").exists():
            from stable_baselines3 import PPO

            policy = PPO.load(folder / "agent.zip", device="cpu")
        return cls(params=MMMParams.from_dict(meta["params"]), samples=[MMMParams.from_dict(s) for s in meta["samples"]],
                   history=h, alpha=float(meta["alpha"]), policy=policy, info=meta.get("info", {}),
                   worlds=[MMMParams.from_dict(w) for w in meta.get("worlds", [])])

    # --- planning ------------------------------------------------------------------------------------
    def curves(self, periods: int, start: int = 0, init: np.ndarray | None = None, params: MMMParams | None = None,
               peak_any: np.ndarray | None = None) -> Curves:
        _, woy, peaks = self.calendar(periods, start)
        return horizon_curves(params or self.params, self.history, periods, start, init,
                              peaks if peak_any is None else peak_any, woy)

    def ensemble(self, periods: int, start: int = 0, actual_spend: np.ndarray | None = None):
        """The planning ensemble over the horizon (each world's adstock carried through history and actuals);
        the point fit alone when no ensemble was saved."""
        out = []
        peak_any = self.calendar(periods, start)[2]
        worlds = self.worlds or [self.params]
        if len(self._end_stock) != len(worlds):
            self._end_stock = [geometric_adstock(self.history.spend, w.decay)[-1] for w in worlds]
        for w, init in zip(worlds, self._end_stock):
            if actual_spend is not None and len(actual_spend):
                init = geometric_adstock(actual_spend, w.decay, init)[-1]
            out.append(self.curves(periods, start, init, params=w, peak_any=peak_any))
        return Ensemble(out)

    def calendar(self, periods: int, start: int = 0) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
        """(dates, week of year, peak 0/1) of the planned periods (cached: pandas date logic is slow)."""
        cache = self._calendars
        if (periods, start) not in cache:
            dates = self.history.future_dates(periods, start)
            cache[(periods, start)] = (dates, dates.isocalendar().week.to_numpy().astype(float),
                                       peak_flags(dates, self.history.step_days).max(1))
        return cache[(periods, start)]

    def env(self, curves: Curves, cons: Constraints, start: int = 0, worlds: list[Curves] | None = None,
            base: np.ndarray | None = None, base_source=None) -> AllocatorEnv:
        _, woy, peak = self.calendar(curves.T, start)
        env = AllocatorEnv(curves, worlds or [curves], cons, woy=woy, peak=peak, alpha=self.alpha,
                           base_plans={1.0: base} if base is not None else None,
                           base_source=base_source if base_source is not None else self.ensemble(curves.T, start))
        return env

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.policy is None:
            return np.zeros(len(self.channels) + 2)
        a, _ = self.policy.predict(obs, deterministic=True)
        return a

    def plan(self, budget: float, periods: int, **kw) -> PlanResult:
        """A plan for `budget` over `periods` (see planning.plan for the flags and the steps)."""
        return planning.plan(self, budget, periods, **kw)
