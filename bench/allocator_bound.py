"""How close to the oracle can ANY planner get from the history alone? A Bayes-optimal reference for issue D's bar.

    .venv/bin/python bench/allocator_bound.py [--worlds bench|10-29] [--draws 64] [--steps 3000]
    .venv/bin/python bench/allocator_bound.py --spread 6   # the served plan over 6 training seeds per world
    .venv/bin/python bench/allocator_bound.py --check-sampler   # the MCMC on a Gaussian of known covariance

For each synthetic world: sample the exact posterior of the planted media parameters given the 156-week history,
with the generator's own priors (training/synth.make_marketing_mix draws decay ~ U(0.1, 0.7), half-saturation
ratio ~ U(0.8, 2.0), Hill slope ~ U(1, 2.5), ROI at typical spend ~ U(1.5, 7)) and more the product never has:
each channel's typical spend, the peak media multiplier and the noise level are given their TRUE values. The
baseline (trend, season, peaks, promo) is the model's own linear basis, which spans the generator's baseline exactly,
with a flat prior (integrated out). Then plan on the posterior expected revenue (maximising it is the Bayes-optimal
open-loop decision for a risk-neutral planner) and play that plan on the TRUE curves, as bench/allocator.py does.

Averaged over worlds drawn from the generator, no planner that sees only the history has a higher expected
incremental revenue than this one (it even knows the priors and three quantities the product must estimate), so
its share of the oracle is a generous reference for what issue D's bar "≥ 0.98 of the oracle" asks of a plan.
Weaker variants (VARIANTS) take those gifts away one by one, down to the product's own priors: a posterior the
product could sample itself. The sampler is an affine-invariant ensemble MCMC (Goodman & Weare's stretch move, as
in emcee), started from the product's own bootstrap fits.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from allocator import WORLDS, family_truth, markdown, true_and_oracle, validation_world  # noqa: E402
from omnidecide.models.allocator.mmm import (DECAY_MAX, PRIOR, SLOPE_RANGE, MMMParams, _Problem,  # noqa: E402
                                  history_from_frame, horizon_curves, truth_params)
from omnidecide.models.allocator.constraints import Constraints  # noqa: E402
from omnidecide.models.allocator.curves import Ensemble  # noqa: E402
from omnidecide.models.allocator.solvers import best_plan  # noqa: E402
from omnidecide.models.response import media_revenue  # noqa: E402
from omnidecide.training.allocator.pipeline import Config, reference_budget, run  # noqa: E402
from omnidecide.training.mmm_worlds import make_seasonal_world  # noqa: E402
from omnidecide.training.synth import make_marketing_mix  # noqa: E402

LO = np.array([0.1, 0.8, 1.0, 1.5])  # decay, half ratio r, slope, ROI at typical spend: the generator's boxes
HI = np.array([0.7, 2.0, 2.5, 7.0])


class Posterior:
    """log p(z | history) up to a constant for many walkers at once. z per channel: decay, log r (half-saturation
    over the steady-state adstock at the typical spend), slope, log ROI (at the typical spend, steady state); then
    the peak media multiplier m when it is estimated.

    knows: which of the generator's truths the posterior is given -- "priors" (the generator's uniform boxes, else
    the product's MAP priors plus a log-ROI prior N(log roi_mu, roi_sd)), "scale" (each channel's typical spend, else
    the history's mean spend), "m" (the peak media multiplier, else estimated under the product's prior), "sigma"
    (the noise level, else integrated out under a Jeffreys prior)."""

    def __init__(self, h, truth: dict, knows: set[str], roi_mu: float = 3.0, roi_sd: float = 0.7):
        prob = _Problem(h)
        ch = truth["channels"]
        self.knows, self.roi_mu, self.roi_sd = knows, roi_mu, roi_sd
        self.typical = (np.array([ch[c]["typical_spend"] for c in h.channels]) if "scale" in knows
                        else h.spend.mean(0))
        # (only read when given: the second world family has neither a peak multiplier nor an additive noise level)
        self.m_true = truth["peak_media_multiplier"] - 1.0 if "m" in knows else None
        self.sigma = truth["baseline"]["noise_sd_share"] * truth["baseline"]["level"] if "sigma" in knows else None
        self.spend, self.C = h.spend, len(h.channels)
        self.peak = prob.peak_any
        X = np.concatenate([prob.base, prob.ctrl], axis=1)  # baseline basis + controls (promo)
        self.Q = np.linalg.qr(X)[0]
        self.y = h.revenue
        self.dof = len(self.y) - X.shape[1]
        self.d = 4 * self.C + ("m" not in knows)

    def natural(self, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """(W, d) -> decay, half, slope, beta (each (W, C)) in money units, and m (W,)."""
        C = self.C
        v = z[:, :4 * C].reshape(len(z), 4, C)
        decay, r, slope, roi = v[:, 0], np.exp(v[:, 1]), v[:, 2], np.exp(v[:, 3])
        half = self.typical / (1 - decay) * r
        beta = roi * self.typical * (1 + r ** slope)
        m = np.full(len(z), self.m_true) if "m" in self.knows else z[:, 4 * C]
        return decay, half, slope, beta, m

    def logprior(self, z: np.ndarray) -> np.ndarray:
        C = self.C
        v = z[:, :4 * C].reshape(len(z), 4, C)
        decay, logr, slope, logroi = v[:, 0], v[:, 1], v[:, 2], v[:, 3]
        if "priors" in self.knows:  # uniform in decay, r, slope, ROI: densities in log r, log ROI carry the Jacobian
            ok = ((decay > LO[0]) & (decay < HI[0]) & (logr > np.log(LO[1])) & (logr < np.log(HI[1]))
                  & (slope > LO[2]) & (slope < HI[2]) & (logroi > np.log(LO[3])) & (logroi < np.log(HI[3])))
            lp = (logr + logroi).sum(1)
        else:
            P = PRIOR
            ok = (decay > 0) & (decay < DECAY_MAX) & (slope > SLOPE_RANGE[0]) & (slope < SLOPE_RANGE[1])
            z2 = (((decay - P["decay"][0]) / P["decay"][1]) ** 2
                  + ((logr - P["log_half_rel"][0]) / P["log_half_rel"][1]) ** 2
                  + ((slope - P["slope"][0]) / P["slope"][1]) ** 2
                  + ((logroi - np.log(self.roi_mu)) / self.roi_sd) ** 2)
            lp = -0.5 * z2.sum(1)
        ok = ok.all(1)
        if "m" not in self.knows:
            m = z[:, 4 * C]
            ok &= (m > -0.5) & (m < 3.0)
            lp = lp - 0.5 * ((m - PRIOR["media_peak_mult"][0]) / PRIOR["media_peak_mult"][1]) ** 2
        return np.where(ok, lp, -np.inf)

    def media(self, z: np.ndarray) -> np.ndarray:
        """(n, W, C) incremental revenue per period, walker and channel."""
        decay, half, slope, beta, m = self.natural(z)
        spend = np.broadcast_to(self.spend[:, None, :], (len(self.y), len(z), self.C))
        return media_revenue(spend, decay, half, slope, beta, multiplier=(1 + np.outer(self.peak, m))[:, :, None])

    def logp(self, z: np.ndarray) -> np.ndarray:
        out = self.logprior(z)
        inside = np.isfinite(out)
        if inside.any():
            r = self.y - self.media(z[inside]).sum(2).T  # (W, n)
            rss = (r ** 2).sum(1) - ((r @ self.Q) ** 2).sum(1)  # the baseline integrated out (flat prior)
            ll = -rss / (2 * self.sigma ** 2) if "sigma" in self.knows else -0.5 * self.dof * np.log(rss)
            out[inside] += ll
        return out

    def point(self, p: MMMParams) -> np.ndarray:
        """A parameter set -> z (clipped inside the uniform boxes when the generator's priors are used)."""
        r = p.half_saturation * (1 - p.decay) / self.typical
        roi = p.beta / (self.typical * (1 + r ** p.slope))
        if "priors" in self.knows:
            eps = 0.01 * (HI - LO)
            dec, r, sl, roi = (np.clip(a, LO[i] + eps[i], HI[i] - eps[i])
                               for i, a in enumerate((p.decay, r, p.slope, roi)))
        else:
            dec, roi = np.clip(p.decay, 0.01, DECAY_MAX - 0.01), np.maximum(roi, 1e-3)
            sl = np.clip(p.slope, SLOPE_RANGE[0] + 0.01, SLOPE_RANGE[1] - 0.01)
        z = np.concatenate([dec, np.log(r), sl, np.log(roi)])
        return z if "m" in self.knows else np.append(z, np.clip(p.media_peak_mult, -0.49, 2.99))

    def params(self, z: np.ndarray, channels: list[str]) -> list[MMMParams]:
        decay, half, slope, beta, m = self.natural(z)
        return [MMMParams(channels=channels, decay=decay[k], half_saturation=half[k], slope=slope[k], beta=beta[k],
                          media_peak_mult=float(m[k])) for k in range(len(z))]


def stretch_mcmc(post: Posterior, start: np.ndarray, steps: int, rng: np.random.Generator, a: float = 2.0):
    """Goodman & Weare's affine-invariant stretch move on W walkers (two halves updated in turn); returns the last
    state and the acceptance rate."""
    x = start.copy()
    lp = post.logp(x)
    W, d = x.shape
    half = W // 2
    acc = 0
    for _ in range(steps):
        for s in (slice(0, half), slice(half, W)):
            other = slice(half, W) if s.start == 0 else slice(0, half)
            n = len(x[s])
            z = ((a - 1) * rng.random(n) + 1) ** 2 / a
            partner = x[other][rng.integers(0, len(x[other]), n)]
            prop = partner + z[:, None] * (x[s] - partner)
            lq = post.logp(prop)
            with np.errstate(invalid="ignore"):  # a walker outside the support moves to any proposal inside it
                gain = np.where(np.isfinite(lp[s]), lq - lp[s], np.where(np.isfinite(lq), np.inf, -np.inf))
            ok = np.log(rng.random(n)) < (d - 1) * np.log(z) + gain
            xs, lps = x[s], lp[s]
            xs[ok], lps[ok] = prop[ok], lq[ok]
            x[s], lp[s] = xs, lps
            acc += ok.sum()
    return x, lp, acc / (steps * W)


VARIANTS = {  # column -> (what the posterior is given, log-ROI prior centre, sd)
    "Bayes: generator priors + true scale, m, sigma": ({"priors", "scale", "m", "sigma"}, 3.0, 0.7),
    "Bayes: generator priors only": ({"priors"}, 3.0, 0.7),
    "Bayes: product priors + ROI prior LN(log 3, 0.7)": (set(), 3.0, 0.7),
    "Bayes: product priors, ROI prior LN(log 3, 2)": (set(), 3.0, 2.0),
}


def bayes_plan(post: Posterior, h, start: np.ndarray, T: int, cons: Constraints, draws: int, steps: int,
               rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Burn in, sample, plan on `draws` posterior draws; the plan and the chain's diagnostics."""
    x, lp, _ = stretch_mcmc(post, start, steps, rng)  # burn-in
    x2, lp2, acc = stretch_mcmc(post, x, steps, rng)
    pick = rng.choice(len(x2), draws, replace=False)
    ens = Ensemble([horizon_curves(p, h, T) for p in post.params(x2[pick], h.channels)])
    return best_plan(ens, cons), {"lp": (float(np.median(lp)), float(np.median(lp2))), "acc": acc, "z": x2}


def world_row(name: str, seed: int, df: pd.DataFrame, truth: dict, T: int, draws: int, steps: int,
              variants: list[str], family: str = "ours") -> dict:
    h = history_from_frame(df)
    rng = np.random.default_rng(seed)
    alloc, _ = run(h, Config(seed=seed, timesteps=0, n_boot=20))
    boot = alloc.samples  # the walkers start on the product's own bootstrap fits
    B = reference_budget(h, T)
    cons = Constraints(budget=B, reserve=0.0)
    true, orc = family_truth(family, h, truth, T, B)
    row = {"world": name, "served plan": true.revenue(alloc.plan(B, T, reserve=0.0).spend).sum() / orc}
    for v in variants:
        knows, mu, sd = VARIANTS[v]
        post = Posterior(h, truth, knows, mu, sd)
        W = max(2 * draws, 8 * post.d + 2)
        start = np.stack([post.point(boot[k % len(boot)]) for k in range(W)])
        start = start + rng.normal(0, 0.01, start.shape)
        t0 = time.time()
        x, diag = bayes_plan(post, h, start, T, cons, draws, steps, rng)
        row[v] = true.revenue(x).sum() / orc
        gap = (f"{post.logp(post.point(truth_params(truth, h.channels))[None])[0] - diag['lp'][1]:.1f}"
               if family == "ours" else "-")  # (the second family's truth is not in the model's parameter space)
        row[f"{v}: log post burn-in / end, truth - median, acc, s"] = (
            f"{diag['lp'][0]:.1f} / {diag['lp'][1]:.1f}, {gap}, {diag['acc']:.2f}, {time.time() - t0:.0f}")
    return row


def seed_spread(worlds, T: int, n: int) -> None:
    """The served plan (planner; no agent) refitted with training seeds 0..n-1 on the same history: how much of one
    world's figure is the bootstrap's and the planning ensemble's luck."""
    rows = []
    for name, df, truth in worlds:
        h = history_from_frame(df)
        B = reference_budget(h, T)
        true, orc = true_and_oracle(h, truth, T, B)
        fits = [run(h, Config(seed=s, timesteps=0, n_boot=20))[0] for s in range(n)]
        r = np.array([true.revenue(a.plan(B, T, reserve=0.0).spend).sum() for a in fits]) / orc
        rows.append({"world": name, "mean": r.mean(), "sd": r.std(), "min": r.min(), "max": r.max()})
    res = pd.DataFrame(rows)
    print(f"served plan (agent off) / oracle over training seeds 0-{n - 1}; mean of the worlds' means "
          f"{res['mean'].mean():.4f}, mean sd {res['sd'].mean():.4f}\n")
    print(markdown(res, ".3f"))


def check_sampler(dim: int = 24, walkers: int = 128) -> None:
    """The sampler on a correlated Gaussian of known covariance: sample mean and sd against the truth."""

    class Gauss:
        def __init__(self, rng):
            a = rng.normal(size=(dim, dim))
            self.cov = np.linalg.inv(a @ a.T / dim + 0.5 * np.eye(dim)) * 0.002
            self.prec, self.mu = np.linalg.inv(self.cov), rng.uniform(0.3, 0.7, dim)

        def logp(self, u):
            d = u - self.mu
            return -0.5 * np.einsum("wi,ij,wj->w", d, self.prec, d)

    rng = np.random.default_rng(1)
    g = Gauss(rng)
    x, _, _ = stretch_mcmc(g, g.mu + rng.normal(0, 0.01, (walkers, dim)), 2000, rng)
    xs = []
    for _ in range(10):
        x, _, acc = stretch_mcmc(g, x, 200, rng)
        xs.append(x.copy())
    xs = np.concatenate(xs)
    sd = np.sqrt(np.diag(g.cov))
    ratio = xs.std(0) / sd
    print(f"{dim}-d correlated Gaussian, {walkers} walkers: acceptance {acc:.2f}, largest |mean error| / sd "
          f"{np.max(np.abs(xs.mean(0) - g.mu) / sd):.2f}, sample sd / true sd {ratio.min():.2f}-{ratio.max():.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", default="bench", help="'bench' (bench/allocator.py's five), a seed range like 10-29, "
                    "or 'seasonal' / 'seasonal:0-4' (the second world family, training/mmm_worlds.py; only the "
                    "product-prior variants apply there: its generator has no priors in the model's parameter space)")
    ap.add_argument("--draws", type=int, default=64, help="posterior draws the plan averages over")
    ap.add_argument("--steps", type=int, default=3000, help="MCMC steps for burn-in, and again for sampling")
    ap.add_argument("--periods", type=int, default=26)
    ap.add_argument("--variants", default="0,1,2,3", help="which posteriors (indices into VARIANTS)")
    ap.add_argument("--spread", type=int, default=0, help="instead: the served plan over this many training seeds")
    ap.add_argument("--check-sampler", action="store_true", help="instead: the sampler on a known Gaussian")
    args = ap.parse_args()
    family = "seasonal" if args.worlds.startswith("seasonal") else "ours"
    if family == "seasonal":
        a, b = (int(v) for v in (args.worlds.split(":")[1] if ":" in args.worlds else "0-4").split("-"))
        worlds = [(f"seed {s}, 5 ch", *make_seasonal_world(s)) for s in range(a, b + 1)]
    elif args.worlds == "bench":
        worlds = [(f"seed {s}, {len(c)} ch", *make_marketing_mix(s, channels=list(c))) for s, c in WORLDS]
    else:
        a, b = (int(v) for v in args.worlds.split("-"))
        worlds = []
        for s in range(a, b + 1):
            df, truth = validation_world(s)
            worlds.append((f"seed {s}, {sum(c.startswith('spend_') for c in df.columns)} ch", df, truth))
    if args.check_sampler:
        check_sampler()
        return
    if args.spread:
        seed_spread(worlds, args.periods, args.spread)
        return
    variants = [v for i, v in enumerate(VARIANTS) if str(i) in args.variants.split(",")]
    if family == "seasonal":
        variants = [v for v in variants if not VARIANTS[v][0]]
    rows = []
    for name, df, truth in worlds:
        seed = int(name.split()[1].rstrip(","))
        rows.append(world_row(name, seed, df, truth, args.periods, args.draws, args.steps, variants, family))
        print(f"done {name}: {rows[-1]}", file=sys.stderr, flush=True)
    res = pd.DataFrame(rows)
    num = ["served plan", *variants]
    summ = [{"world": "**mean**", **res[num].mean().to_dict()}, {"world": "worst", **res[num].min().to_dict()},
            {"world": "worlds >= 0.98", **{c: f"{int((res[c] >= 0.98).sum())}/{len(res)}" for c in num}}]
    print(f"T={args.periods}, reserve 0, {args.draws} posterior draws, {args.steps}+{args.steps} MCMC steps; "
          f"load average at the end {os.getloadavg()[0]:.2f}\n")
    print(markdown(pd.concat([res[["world", *num]], pd.DataFrame(summ)], ignore_index=True), ".3f"))
    print("\nChains (per variant: median log posterior of the walkers at the end of burn-in / of sampling; the planted "
          "parameters' log posterior minus that median, near 0 when the truth looks like a posterior draw; "
          "acceptance rate; seconds):\n")
    print(markdown(res[["world", *[c for c in res.columns if c.endswith(", s")]]]))


if __name__ == "__main__":
    main()
