"""The saved allocator: fitted response (point + bootstrap draws), the history it came from, the residual agent.

`Allocator.plan(...)` turns a budget request (and optional actuals) into a plan: the planner's full-horizon
solution on the fitted curves, corrected period by period by the agent (open loop, or with the realised ROI the
actuals imply), then made exactly feasible (budget, reserve, --min/--max, --roi-floor on the fitted curves).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.models.allocator.env import AllocatorEnv
from omnidecide.models.allocator.mmm import History, MMMParams, horizon_curves, peak_flags
from omnidecide.models.allocator.plan import (Constraints, Curves, Ensemble, best_plan, check_constraints, enforce_roi_floor,
                                   project_plan, summarise)
from omnidecide.models.errors import InputError
from omnidecide.models.response import geometric_adstock

RESERVE = "reserve"


def _to_cents(x: np.ndarray) -> np.ndarray:
    """Cents, rounded down (the written plan never exceeds the budget), then each channel gets back the whole cents
    its cells lost, on the cells that lost most: no channel ends above its unrounded total (so --max, the budget and
    the ROI floor still hold) and the plan spends within a cent per channel of what was planned."""
    x = np.asarray(x, float)
    out = np.floor(x * 100) / 100
    lost = np.clip((x - out) * 100, 0.0, 1.0)  # per cell, in cents
    for c in range(x.shape[1]):
        k = int(np.floor(lost[:, c].sum() + 1e-9))
        if k:
            top = np.argsort(-lost[:, c], kind="stable")[:k]
            out[top, c] = np.round(out[top, c] + 0.01, 2)
    return out


@dataclass
class Updating:
    """Re-planning from measured channel revenue (`revenue_<channel>` in the actuals); see `Allocator.draw_weights`.
    reweight: Bayesian update of the planning ensemble (draws reweighted by the likelihood of what was measured);
    rescale: then each channel's level multiplied by its shrunk realised / expected ratio (vs the updated ensemble)."""

    reweight: bool = True
    sigma: float = 0.15  # lognormal sd of a measured channel-period revenue around a draw's prediction
    ess_min: float = 0.5  # tempering: keep each channel's effective number of draws >= ess_min x K
    per_channel: bool = True  # weights per channel (the objective is separable) or one joint weight per draw
    rescale: bool = True
    prior_periods: float = 2.0  # shrinkage of the rescaling ratio


@dataclass
class PlanResult:
    table: pd.DataFrame  # period, channel, spend, expected_revenue
    spend: np.ndarray  # (T, C), including actual periods
    summary: dict
    n_actual: int = 0


@dataclass
class Allocator:
    params: MMMParams
    samples: list[MMMParams]
    history: History
    alpha: float = 0.5
    worlds: list[MMMParams] = field(default_factory=list)  # planning ensemble: widened bootstrap draws
    policy: object | None = None  # stable_baselines3 model (or anything with .predict(obs, deterministic=True))
    info: dict = field(default_factory=dict)

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
        if peak_any is None:
            peak_any = self.calendar(periods, start)[2]
        return horizon_curves(params or self.params, self.history, periods, start, init, peak_any)

    def ensemble(self, periods: int, start: int = 0, actual_spend: np.ndarray | None = None):
        """The planning ensemble over the horizon (each world's adstock carried through history and actuals);
        the point fit alone when no ensemble was saved."""
        out = []
        peak_any = self.calendar(periods, start)[2]
        worlds = self.worlds or [self.params]
        if len(getattr(self, "_end", [])) != len(worlds):  # adstock at the end of the history, per world (cached)
            self._end = [geometric_adstock(self.history.spend, w.decay)[-1] for w in worlds]
        for w, init in zip(worlds, self._end):
            if actual_spend is not None and len(actual_spend):
                init = geometric_adstock(actual_spend, w.decay, init)[-1]
            out.append(self.curves(periods, start, init, params=w, peak_any=peak_any))
        return Ensemble(out)

    def calendar(self, periods: int, start: int = 0) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
        """(dates, week of year, peak 0/1) of the planned periods (cached: pandas date logic is slow)."""
        cache = self.__dict__.setdefault("_cal", {})
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

    def parse_actuals(self, actuals: pd.DataFrame, periods: int, source: str = "--actuals",
                      per_channel: bool = False) -> tuple:
        """ACTUALS.csv: one row per elapsed period (in order; `period` 1..k or `date` to sort by), a `spend_<channel>`
        column per channel (missing = 0), optional `revenue`, optional `revenue_<channel>` (the channel's measured
        incremental revenue in that period, e.g. attributed). Returns (spend (k, C), revenue (k,) or None) and, with
        per_channel, also the (k, C) channel revenue (nan where not given) or None."""
        df = actuals.copy()
        if "period" in df:
            df = df.sort_values("period", key=lambda s: pd.to_numeric(s, errors="coerce"))
        elif "date" in df:
            df = df.sort_values("date")
        unknown = [c for c in df.columns if c.startswith("spend_") and c[len("spend_"):] not in self.channels]
        if unknown:
            raise InputError(f"{source}: unknown channel column(s) {', '.join(unknown)}; the model knows {', '.join(self.channels)}")
        if not any(c.startswith("spend_") for c in df.columns):
            raise InputError(f"{source}: no spend_<channel> columns")
        if len(df) >= periods:
            raise InputError(f"{source}: {len(df)} periods of actuals but --periods is {periods}; nothing left to plan")
        x = np.zeros((len(df), len(self.channels)))
        for j, c in enumerate(self.channels):
            if f"spend_{c}" in df:
                v = pd.to_numeric(df[f"spend_{c}"], errors="coerce")
                if v.isna().any() or (v < 0).any():
                    raise InputError(f"{source}: spend_{c} must be numbers >= 0")
                x[:, j] = v.to_numpy(float)
        rev = None
        if "revenue" in df:
            r = pd.to_numeric(df["revenue"], errors="coerce")
            if r.isna().any():
                raise InputError(f"{source}: revenue must be numeric")
            rev = r.to_numpy(float)
        if not per_channel:
            return x, rev
        unknown = [c for c in df.columns if c.startswith("revenue_") and c[len("revenue_"):] not in self.channels]
        if unknown:
            raise InputError(f"{source}: unknown channel column(s) {', '.join(unknown)}; the model knows {', '.join(self.channels)}")
        ch_rev = None
        if any(c.startswith("revenue_") for c in df.columns):
            ch_rev = np.full((len(df), len(self.channels)), np.nan)
            for j, c in enumerate(self.channels):
                if f"revenue_{c}" in df:
                    v = pd.to_numeric(df[f"revenue_{c}"], errors="coerce")
                    if v.isna().any():
                        raise InputError(f"{source}: revenue_{c} must be numeric")
                    ch_rev[:, j] = v.to_numpy(float)
        return x, rev, ch_rev

    def channel_ratio(self, x_act: np.ndarray, ch_rev: np.ndarray, prior_periods: float = 2.0,
                      expected: np.ndarray | None = None) -> np.ndarray:
        """Realised / expected incremental revenue per channel over the elapsed periods (where it spent and was
        measured), shrunk towards 1 as if `prior_periods` periods had matched the fit: exp(n / (n + n0) * log ratio),
        clipped to [1/3, 3]. Multiplies the channel's effect size when re-planning (the planner recalibrated to what
        was realised: the fit pins a channel's level worst, see BENCHMARKS). `expected` (k, C): the expectation to
        compare with (default: the planning ensemble's mean)."""
        exp_ = self.ensemble(len(x_act)).revenue(x_act) if expected is None else expected
        seen = np.isfinite(ch_rev) & (x_act > 0)
        num, den = np.where(seen, ch_rev, 0.0).sum(0), np.where(seen, exp_, 0.0).sum(0)
        n = seen.sum(0)
        raw = np.clip(np.where(den > 0, num / np.maximum(den, 1e-12), 1.0), 1 / 3, 3)
        return np.exp(n / (n + prior_periods) * np.log(np.where(den > 0, raw, 1.0)))

    def draw_weights(self, x_act: np.ndarray, ch_rev: np.ndarray, upd: "Updating") -> tuple[np.ndarray, np.ndarray, dict]:
        """Bayesian update of the planning ensemble from measured channel revenue.

        Each draw k predicts each channel's incremental revenue E[k, t, c] in the elapsed periods (its own adstock
        from the end of the history); the measurement is taken as lognormal around it with sd `upd.sigma`
        (attribution noise + per-period model error). Channels are separable in the plan's objective, so each
        channel gets its own weights over the draws (`per_channel`; else one joint weight per draw). The
        likelihood is tempered: raised to the largest power <= 1 that keeps the effective sample size
        >= `upd.ess_min` x K, so a few periods cannot collapse the ensemble onto one draw.
        Returns (weights (K, C), each column summing to 1; per-draw expectations E (K, k, C); info)."""
        ens = self.ensemble(len(x_act))
        E = np.stack([w.revenue(x_act) for w in ens.worlds])  # (K, k, C)
        K, _, C = E.shape
        seen = np.isfinite(ch_rev) & (x_act > 0) & (np.nan_to_num(ch_rev) > 0)
        r = np.log(np.where(seen, np.nan_to_num(ch_rev), 1.0))[None] - np.log(np.where(seen[None], np.maximum(E, 1e-12), 1.0))
        ll = -0.5 * (np.where(seen[None], r, 0.0) / upd.sigma) ** 2
        ll = ll.sum(1)  # (K, C)
        if not upd.per_channel:
            ll = np.repeat(ll.sum(1, keepdims=True), C, axis=1)

        def weights(tau, col):
            z = tau * col
            w = np.exp(z - z.max())
            return w / w.sum()

        W, taus = np.full((K, C), 1.0 / K), np.zeros(C)
        for c in range(C):
            if not seen[:, c].any():
                continue
            ess = lambda tau, c=c: 1.0 / (weights(tau, ll[:, c]) ** 2).sum()  # noqa: E731
            if ess(1.0) >= upd.ess_min * K:
                tau = 1.0
            else:  # ESS falls as tau grows: bisection for the largest tau that keeps it
                lo_, hi_ = 0.0, 1.0
                for _ in range(40):
                    mid = 0.5 * (lo_ + hi_)
                    lo_, hi_ = (mid, hi_) if ess(mid) >= upd.ess_min * K else (lo_, mid)
                tau = lo_
            W[:, c], taus[c] = weights(tau, ll[:, c]), tau
        info = {"tempering": taus, "ess": 1.0 / (W ** 2).sum(0)}
        return W, E, info

    def plan(self, budget: float, periods: int, *, reserve: float = 0.15, lo: dict | None = None, hi: dict | None = None,
             roi_floor: dict | None = None, actuals: pd.DataFrame | None = None, use_agent: bool | None = None,
             updating: "Updating | None" = None) -> PlanResult:
        """use_agent: None = as training decided (the agent is served only if it beat the planner on held-out worlds).
        updating: how measured channel revenue in the actuals updates the planning ensemble (default `Updating()`)."""
        if use_agent is None:
            use_agent = bool(self.info.get("agent_enabled", True))
        if periods < 1:
            raise InputError(f"--periods must be at least 1, got {periods}")
        C = len(self.channels)

        def arr(d, flag, fill):
            out = np.full(C, fill, float)
            for k, v in (d or {}).items():
                if k not in self.channels:
                    raise InputError(f"{flag} {k}={v}: unknown channel; the model knows {', '.join(self.channels)}")
                if not np.isfinite(v) or v < 0:
                    raise InputError(f"{flag} {k}={v}: must be a number >= 0")
                out[self.channels.index(k)] = v
            return out

        lo_a, hi_a, fl_a = arr(lo, "--min", 0.0), arr(hi, "--max", np.inf), arr(roi_floor, "--roi-floor", np.nan)
        x_act = np.zeros((0, C))
        rev_act = ch_rev = None
        if actuals is not None:
            x_act, rev_act, ch_rev = self.parse_actuals(actuals, periods, per_channel=True)
        k = len(x_act)
        cons = Constraints(budget=budget, reserve=reserve, lo=lo_a, hi=hi_a, roi_floor=fl_a,
                           spent=float(x_act.sum()), spent_per_channel=x_act.sum(0))
        check_constraints(Constraints(budget=budget, reserve=reserve, lo=lo_a, hi=hi_a, roi_floor=fl_a), self.channels)
        if x_act.sum() > budget * (1 - reserve) + 1e-6:
            raise InputError(f"--actuals: {x_act.sum():,.2f} already spent, more than --budget {budget:,.2f} less --reserve "
                             f"{reserve:.0%}; raise --budget or lower --reserve")
        need = np.maximum(lo_a - x_act.sum(0), 0).sum()
        if need > cons.spendable + 1e-6:
            raise InputError(f"--min: the minimums still needed ({need:,.2f}) exceed the budget left ({cons.spendable:,.2f})")
        # state after the actual periods (fitted decay), then the rest of the horizon
        stock0 = geometric_adstock(self.history.spend, self.params.decay)[-1]
        init = geometric_adstock(x_act, self.params.decay, stock0)[-1] if k else stock0
        rest = self.curves(periods - k, start=k, init=init)
        ratio = None
        if k and rev_act is not None:  # realised media / expected media over the actual periods (one ratio for all channels)
            dates = self.history.future_dates(k)
            n = len(self.history.dates)
            base = self.params.baseline_at(dates, np.arange(n, n + k), self.history.step_days)
            full = self.curves(k, init=stock0)
            exp_media = (full.beta * full._h(full.stock(x_act)) * full.mult[:, None]).sum()
            if exp_media > 0:
                ratio = float(np.clip((rev_act.sum() - base.sum()) / exp_media, 0.0, 3.0))
        ens = self.ensemble(periods - k, start=k, actual_spend=x_act)
        ch_ratio = ess = None
        upd = updating or Updating()
        if k and ch_rev is not None:  # measured channel revenue: update the ensemble, recalibrate each channel's level
            expected = None
            if upd.reweight:
                W, E, winfo = self.draw_weights(x_act, ch_rev, upd)
                ens = ens.reweighted(W)
                expected = np.einsum("kc,ktc->tc", W, E)
                ess = winfo["ess"]
            if upd.rescale:
                ch_ratio = self.channel_ratio(x_act, ch_rev, upd.prior_periods, expected=expected)
                ens, rest = ens.scaled(ch_ratio), rest.scaled(ch_ratio)
        base_plan = best_plan(ens, cons, channels=self.channels)
        x = base_plan
        if use_agent and self.policy is not None:
            env = self.env(rest, cons, start=k, base=base_plan, base_source=ens)
            env.ratio_noise = 0.0  # open loop on the fitted curves: deterministic
            obs, _ = env.reset(options={"budget_scale": 1.0})
            if ratio is not None:
                env.ratio = np.full(C, ratio)
                obs = env._obs()
            done = False
            while not done:
                obs, _, done, _, _ = env.step(self.act(obs))
            x = env.spend
        x = project_plan(enforce_roi_floor(x, ens, cons, self.channels), cons)
        x = _to_cents(x)
        rev = ens.revenue(x)
        full_spend = np.vstack([x_act, x])
        rows = []
        if k:
            act_rev = self.ensemble(k).revenue(x_act)
            for t in range(k):
                for j, c in enumerate(self.channels):
                    rows.append((t + 1, c, float(x_act[t, j]), round(float(act_rev[t, j]), 2)))
        for t in range(periods - k):
            for j, c in enumerate(self.channels):
                rows.append((k + t + 1, c, float(x[t, j]), round(float(rev[t, j]), 2)))
        held = budget - float(full_spend.sum())
        res_amt = float(np.floor(budget * reserve * 100) / 100)
        if res_amt > 0:
            rows.append((1, RESERVE, res_amt, 0.0))
        table = pd.DataFrame(rows, columns=["period", "channel", "spend", "expected_revenue"])
        if table["spend"].sum() > budget + 1e-6:  # cannot happen: projection + rounding down; a bug if it does
            raise RuntimeError(f"plan spends {table['spend'].sum():,.2f} > budget {budget:,.2f}")
        s = summarise(x, ens, self.channels)
        summary = {"budget": budget, "periods": periods, "reserve": res_amt, "actual_periods": k,
                   "planned_spend": s.spend, "unallocated": max(held - res_amt, 0.0),
                   "expected_incremental_revenue": s.incremental_revenue, "roi": s.roi, "per_channel": s.per_channel,
                   "agent": bool(use_agent and self.policy is not None), "realised_ratio": ratio,
                   "channel_ratio": None if ch_ratio is None else dict(zip(self.channels, ch_ratio.round(4).tolist())),
                   "draws_effective": None if ess is None else dict(zip(self.channels, ess.round(2).tolist()))}
        return PlanResult(table=table, spend=full_spend, summary=summary, n_actual=k)
