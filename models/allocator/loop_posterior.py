"""The loop's posterior: what a year of weekly revenue teaches about each planning draw's channel levels and weight.

Why its own module: the closed loop (explore_loop.py) decides, this learns; the conjugate update is the part the
loop's tests pin down (a planted level is learned; a draw that says a channel returns nothing can learn it does).

For each planning draw k (shape: decay, half-saturation, slope from the fit), a Bayesian linear regression of the
observed weekly revenue minus the fit's baseline on [1, baseline - its mean, the fit's residual a year earlier,
media_k,c(t) per channel c] (media_k,c(t): draw k's media revenue of channel c in loop week t given all spend so far,
the history's carry-over included). theta_k,c are draw k's levels on its channel columns (the draw's curve shapes,
each sized to return at least the draw's average channel at last year's mix, so a draw that says a channel returns
nothing can still learn that it does), prior N(the draw's own level, TAU^2); noise sd from the history
(fit_residuals). Each draw is also weighed by its evidence (the regression's marginal likelihood): the loop learns
which shapes fit, not only the levels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from omnidecide.models.allocator.actuals import tempered_weights
from omnidecide.models.allocator.curves import Curves, Ensemble

TAU = 0.5  # prior sd of a draw's per-channel level (fixed a priori, not tuned on either world family)
EVIDENCE = True  # weigh the draws (shapes) by their evidence in the loop's revenue


@dataclass
class LevelPosterior:
    """Per-draw conjugate regression of loop revenue on the draws' channel media (module docstring, step 1)."""

    ens: Ensemble  # planning draws over the whole loop (week 0 = first loop week)
    base_hat: np.ndarray  # (T,) the fit's expected revenue without media (baseline)
    sigma: float
    last: np.ndarray  # (T,) the fit's residual in the same weeks last year (fit_residuals)
    repeat: float  # prior mean of how much of it repeats
    x_ref: np.ndarray  # (T, C) last year's mix over the loop: where the prior's scale is read
    m: np.ndarray = field(init=False)  # (K, C) posterior mean of theta
    V: np.ndarray = field(init=False)  # (K, C, C) posterior covariance of theta

    def __post_init__(self) -> None:
        K, C = self.ens.K, self.ens.C
        # columns: each draw's curve shapes sized to return at least its average channel at last year's mix (ref), so
        # a channel the draw says returns nothing (beta = 0) has a column too; prior sd TAU x ref, mean the draw's own
        unit = Ensemble([Curves(w.decay, w.half, w.slope, np.ones(C), w.mult, w.init) for w in self.ens.worlds])
        per_unit = unit.per_world(self.x_ref).sum(1)  # (K, C) revenue at last year's mix with effect size 1
        beta = np.array([w.beta for w in self.ens.worlds], float)
        pred = beta * per_unit
        ref = np.maximum(pred.mean(1, keepdims=True), 1e-12)
        small = (pred < ref) & (per_unit > 0)  # (a channel last year never spent keeps its own size)
        self.beta = np.where(small, ref / np.where(small, per_unit, 1.0), beta)  # (K, C) the columns' sizes
        self.ens = self.columns(self.ens)
        self.tau, m0 = np.full((K, C), TAU), beta / self.beta
        self.m = m0.copy()
        self.V = np.stack([np.diag(tk ** 2) for tk in self.tau])
        self.scale = float(np.mean(self.base_hat))
        # prior: intercept sd 10% of revenue, baseline slope sd 0.3, last year's residual's repeat sd 0.5,
        # theta ~ N(m0, TAU^2); P: the full posterior precision per draw (baseline terms first), for info_gain
        self.m0 = np.column_stack([np.tile([0.0, 0.0, self.repeat], (K, 1)), m0])
        self.p0 = np.column_stack([np.tile([1 / 0.1 ** 2, 1 / 0.3 ** 2, 1 / 0.5 ** 2], (K, 1)), 1 / self.tau ** 2])
        self.P = np.stack([np.diag(p) for p in self.p0])
        self.w = np.full(K, 1.0 / K)  # posterior weight of each draw (its shape): prior uniform, then its evidence

    def columns(self, ens: Ensemble) -> Ensemble:
        """`ens` (the same draws, any horizon) with the posterior's column sizes: the curves the levels multiply."""
        return Ensemble([Curves(w.decay, w.half, w.slope, b, w.mult, w.init) for w, b in zip(ens.worlds, self.beta)])

    def rows(self, X: np.ndarray, t0: int, t1: int) -> np.ndarray:
        """(K, t1 - t0, 3 + C) the regression's design rows of loop weeks t0..t1-1 if spend were X (T, C), scaled by
        1/sigma: what those weeks would teach each draw."""
        K, C = self.ens.K, self.ens.C
        fixed = np.column_stack([np.full(t1 - t0, self.scale), self.base_hat[t0:t1] - self.base_hat.mean(),
                                 self.last[t0:t1]])
        media = K * self.ens.stack.media(np.tile(np.asarray(X, float), (1, K)))[t0:t1].reshape(t1 - t0, K, C)
        return np.concatenate([np.broadcast_to(fixed, (K, t1 - t0, 3)), media.transpose(1, 0, 2)], 2) / self.sigma

    def level_var(self, G: np.ndarray | None = None) -> np.ndarray:
        """(K, C) posterior variance of each draw's levels now, or after also observing design rows G (K, n, 3 + C)."""
        P = self.P if G is None else self.P + np.einsum("kni,knj->kij", G, G)
        return np.einsum("kcc->kc", np.linalg.inv(P))[:, 3:]

    def update(self, X: np.ndarray, y: np.ndarray) -> None:
        """X: (t, C) spend so far, y: (t,) observed total revenue."""
        t = len(y)
        if t == 0:
            return
        T = self.ens.T
        Xp = np.zeros((T, self.ens.C))
        Xp[:t] = X
        r = (y - self.base_hat[:t]) / self.sigma
        G = self.rows(Xp, 0, t)
        logml = np.zeros(self.ens.K)
        for k in range(self.ens.K):
            P = np.diag(self.p0[k]) + G[k].T @ G[k]
            cov = np.linalg.inv(P)
            mean = cov @ (self.p0[k] * self.m0[k] + G[k].T @ r)
            self.m[k], self.V[k], self.P[k] = mean[3:], cov[3:, 3:], P
            # log evidence of draw k (marginal likelihood of the loop's revenue): det(I + G P0^-1 G') = det P / det P0
            e = r - G[k] @ self.m0[k]
            g = G[k].T @ e
            logml[k] = -0.5 * (np.linalg.slogdet(P)[1] - np.log(self.p0[k]).sum() + e @ e - g @ cov @ g)
        if EVIDENCE:
            self.w = np.exp(logml - logml.max())
            self.w /= self.w.sum()

    def slots(self) -> np.ndarray:
        """(K,) the draw behind each planning slot: systematic resampling by weight (the same offsets every week, so
        the ensemble shifts smoothly as the weights move); uniform weights keep every draw once."""
        K = len(self.w)
        return np.minimum(np.searchsorted(np.cumsum(self.w), (np.arange(K) + 0.5) / K), K - 1)

    @property
    def rel_sd(self) -> np.ndarray:
        """(C,) each channel's posterior sd of its level relative to its prior sd, averaged over the draws (1 = nothing
        learned yet)."""
        return np.sqrt((np.einsum("kcc->kc", self.V) / self.tau ** 2).mean(0))

    def planning(self, ens: Ensemble, z: np.ndarray | None = None) -> Ensemble:
        """`ens` (the same draws, over the rest of the horizon) with each draw's levels at their posterior mean, or,
        with z (K, C) standard normals, at posterior samples m_k + sd_k * z_k (the same z every week: the ensemble
        narrows as the levels are learned instead of jittering)."""
        idx = self.slots()
        if z is None:
            return Ensemble([ens.worlds[k].scaled(np.maximum(self.m[k], 0.0)) for k in idx])
        sd = np.sqrt(np.einsum("kcc->kc", self.V))
        return Ensemble([ens.worlds[k].scaled(np.maximum(self.m[k] + sd[k] * zj, 0.0)) for k, zj in zip(idx, z)])

    def sample(self, ens: Ensemble, rng: np.random.Generator) -> Curves:
        """One posterior sample: a draw at random, its levels drawn from their posterior."""
        k = int(rng.choice(self.ens.K, p=self.w))
        th = rng.multivariate_normal(self.m[k], self.V[k])
        return ens.worlds[k].scaled(np.maximum(th, 0.0))


def fit_residuals(alloc, T: int) -> tuple[np.ndarray, float, float]:
    """What the fit misses, carried into the loop: last year's residual (history revenue minus the fit) in the same
    weeks, (T,); how much of it repeats a year later (c, least squares over the history); and the noise sd of the
    loop's regression, the sd of what is left of the history's residuals after that repeat. A misspecified baseline
    (a season the model's calendar does not know) leaves the same residual every year; a well specified one leaves
    noise, c near 0 and the plain residual sd."""
    h, p = alloc.history, alloc.params
    n = len(h.dates)
    base = p.baseline_at(h.dates, np.arange(n), h.step_days)
    if len(p.gamma):
        base = base + h.controls @ p.gamma
    e = h.revenue - base - p.media(h.spend, h.peaks.max(1)).sum(1)
    if n < 104:  # not two years: nothing to say the residual repeats
        return np.zeros(T), 0.0, float(np.std(e))
    prev, now = e[:n - 52], e[52:]
    c = float(np.clip(prev @ now / max(prev @ prev, 1e-12), 0.0, 1.0))
    last = np.array([e[n - 52 + (j % 52)] for j in range(T)])
    return last, c, float(np.std(now - c * prev))


CHANNEL_NOISE = 0.1  # prior guess of the lognormal sd of a measured week's channel revenue (attribution / platform)
NOISE_PRIOR_WEEKS = 4.0  # weight of that guess against the residuals when the noise is estimated (pseudo-weeks)
FIT_MAX = 3.0  # a channel's measured series is explained when some draw's residual sd <= FIT_MAX x CHANNEL_NOISE
ESS_MIN = 0.5  # the draws' evidence is tempered to keep >= ESS_MIN x K effective draws (actuals.Updating's rule)
DELAYS = 3  # a channel's revenue may peak up to this many weeks after its spend (the delayed-peak carry-over
# published MMMs report: Jin et al. 2017), a form the fit's geometric carry-over cannot express
HALF = (0.5, 1.0, 2.0)  # a channel's half-saturation may be this many times the draw's (its curve bends earlier or later)
PRIOR_OWN = 0.5  # prior probability of the fit's own form for a channel (the alternatives share the rest)


@dataclass
class ChannelPosterior(LevelPosterior):
    """The levels learned from MEASURED CHANNEL REVENUE (the product re-plans on `revenue_<channel>` in --actuals),
    not from the total alone: each draw and channel, y_c(t) = theta_k,c x m_k,c(t) x (1 + noise), m_k,c(t) the
    draw's incremental revenue of channel c in week t on its column (all spend so far, carry-over included).

    Why: with the total alone the levels of channels whose spend moves together are not separable (a year of
    re-planning near last year's mix taught the loop almost nothing, BENCHMARKS), while a channel's own weekly
    revenue pins its level within a few weeks. Conjugate per draw and channel (one regressor, weighted least squares
    with sd = sigma x the draw's predicted revenue): the noise sigma is estimated per draw and channel from the
    residuals, shrunk to CHANNEL_NOISE with NOISE_PRIOR_WEEKS pseudo-weeks, so a draw whose shapes miss the weekly
    pattern is both less certain of its level and weighed down by its evidence.

    **Forms** (`variants`): the fit's forms cannot express every world (a season that multiplies media with peaks
    the fit's calendar does not know, revenue that peaks weeks after the spend, a curve that bends elsewhere), and a
    level learned on a wrong shape corrects it only where the loop has spent. So each channel's column also comes in
    alternative forms: its revenue realised d = 0..DELAYS weeks after the adstock, at the multiplier of the week it
    is realised in, the draw's own or the history's season index (forms.season_index: the history's revenue shows
    its season whatever the calendar says), and a half-saturation times HALF. Each (form, draw) pair of a channel is
    weighed by its evidence in that channel's series (prior: PRIOR_OWN on the fit's own form), tempered to keep
    ESS_MIN x K pairs effective (as actuals.draw_weights does), so a few weeks cannot collapse the ensemble onto one
    shape; the planning slots mix the channels' pairs (channels are separable), i.e. Bayesian model averaging over
    forms, not a pick. Nothing here is fitted to a world family: the forms are published MMM facts (delayed-peak
    carry-over, Jin et al. 2017; multiplicative seasonality), the same for every history."""

    season: np.ndarray | None = None  # (T,) the history's own season index at the loop's weeks (forms.season_index)

    def __post_init__(self) -> None:
        super().__post_init__()
        K, T, C = self.ens.K, self.ens.T, self.ens.C
        self.Pc = 1.0 / self.tau ** 2  # (K, C) posterior precision of each level
        self.sig = np.full((K, C), CHANNEL_NOISE)
        self.floor = np.zeros(C)
        self.weeks = 0
        # the columns' own media multiplier (K, T, C) and, per variant, the multiplier at the week revenue is realised
        own = np.stack([np.broadcast_to(w.m2, (T, C)) for w in self.ens.worlds])
        self.own = np.maximum(own, 1e-12)
        mults = [self.own]
        if self.season is not None:  # the history's season index, on each column's own mean (the prior keeps its units)
            s = np.asarray(self.season, float)[None, :, None]
            mults.append(s * self.own.mean(1, keepdims=True) / s.mean())
        self.variants = [(f, d, j) for f in range(len(HALF)) for j in range(len(mults)) for d in range(DELAYS + 1)]
        self.mults = mults
        # the columns with each channel's half-saturation times HALF[f], resized to return what the fit's own column
        # does at last year's mix (so a level's prior keeps its meaning): how far the curve bends is a form too
        per = lambda e: e.per_world(self.x_ref).sum(1)  # noqa: E731
        ref = per(self.ens)
        self.ens_f, self.size_f = [], []
        for f in HALF:
            e = Ensemble([Curves(w.decay, w.half * f, w.slope, w.beta, w.mult, w.init) for w in self.ens.worlds])
            r = np.where(ref > 0, ref / np.maximum(per(e), 1e-300), 1.0)
            self.ens_f.append(Ensemble([w.scaled(rk) for w, rk in zip(e.worlds, r)]))
            self.size_f.append(r)
        self.default = self.variants.index((HALF.index(1.0), 0, 0))  # the fit's own form
        self.variant = np.full(C, self.default)  # chosen variant per channel
        self.wc = None  # (V x K, C) each channel's (form, draw) weights, once NOISE_PRIOR_WEEKS weeks are measured

    def fits(self) -> np.ndarray:
        """(C,) bool: a posterior-predictive check per channel. True once at least NOISE_PRIOR_WEEKS weeks are
        measured and some draw's shapes explain the channel's weekly series to within FIT_MAX x the measurement
        noise. False: every draw misses the series' week-to-week pattern (a season, carry-over or curve the fit's
        forms do not have), so a level learned on it is a correction for a wrong shape, and what the curves say
        about spend levels or weeks not measured is not backed."""
        if self.weeks < NOISE_PRIOR_WEEKS:
            return np.zeros(self.ens.C, bool)
        return self.sig.min(0) <= FIT_MAX * CHANNEL_NOISE

    def _sd(self, Y: np.ndarray) -> np.ndarray:
        """(t, C) measurement sd per unit sigma: the measured revenue, floored at a quarter of the channel's mean
        week (a measurement has an absolute error floor: weeks with little revenue, e.g. after a cut, are not exact)."""
        return np.maximum(np.abs(Y), self.floor)

    def own_cols(self, X: np.ndarray, t: int, forms: set[int] | None = None) -> list[np.ndarray | None]:
        """[(K, t, C)] the columns' revenue of spend X (T, C) in loop weeks 0..t-1, one per half-saturation HALF[f];
        with `forms`, only those f are computed (the others None: the weekly design rows need the chosen forms only,
        the update needs all)."""
        return [e.per_world(X)[:, :t] if forms is None or f in forms else None for f, e in enumerate(self.ens_f)]

    def _variant_cols(self, Ms: list[np.ndarray], v: int) -> np.ndarray:
        """(K, t, C) the columns under variant v = (half-saturation f, delay d, multiplier j), from own_cols: the
        revenue of week s's adstock realised d weeks later, at that week's multiplier."""
        f, d, j = self.variants[v]
        M = Ms[f]
        t = M.shape[1]
        if d == 0 and j == 0:
            return M
        out = np.zeros_like(M)
        if d < t:
            out[:, d:] = M[:, :t - d] / self.own[:, :t - d] * self.mults[j][:, d:t]
        return out

    def chosen(self, Ms: list[np.ndarray]) -> np.ndarray:
        """(K, t, C) the columns under each channel's chosen variant."""
        out = Ms[HALF.index(1.0)].copy()
        for c, v in enumerate(self.variant):
            if v != self.default:
                out[:, :, c] = self._variant_cols(Ms, v)[:, :, c]
        return out

    def rows(self, X: np.ndarray, t0: int, t1: int) -> np.ndarray:
        """(K, t1 - t0, C) what weeks t0..t1-1 would teach each draw's levels if spend were X (T, C): the columns'
        revenue over its measurement sd (sigma x the revenue the draw expects at its current level)."""
        used = {HALF.index(1.0)} | {self.variants[v][0] for v in self.variant}
        M = self.chosen(self.own_cols(np.asarray(X, float), t1, used))[:, t0:t1]
        s = np.maximum(np.abs(M * np.maximum(self.m, 0.0)[:, None]), self.floor) * self.sig[:, None]
        return M / np.maximum(s, 1e-12)

    def level_var(self, G: np.ndarray | None = None) -> np.ndarray:
        return 1.0 / (self.Pc if G is None else self.Pc + (G ** 2).sum(1))

    def update_channels(self, X: np.ndarray, Y: np.ndarray) -> None:
        """X: (t, C) spend so far; Y: (t, C) each channel's measured incremental revenue in those weeks."""
        t = len(Y)
        if t == 0:
            return
        Xp = np.zeros((self.ens.T, self.ens.C))
        Xp[:t] = X
        Ms = self.own_cols(Xp, t)  # [(K, t, C)] columns' revenue in the fit's own form, per half-saturation
        self.floor = 0.25 * np.maximum(np.abs(Y).mean(0), 1e-12)
        p0, m0 = 1.0 / self.tau ** 2, self.m0[:, 3:]

        def levels(M: np.ndarray, u: np.ndarray, sig: np.ndarray) -> tuple[np.ndarray, ...]:
            """(scaled columns G, scaled measurements r, posterior precision, posterior mean) of the levels."""
            G, r = M / (u * sig[:, None]), Y[None] / (u * sig[:, None])
            P = p0 + (G ** 2).sum(1)
            return G, r, P, (p0 * m0 + (G * r).sum(1)) / P

        def fitted(M: np.ndarray):
            """(levels' precision, mean, noise, log evidence (K, C)) on columns M. The error's scale u is the draw's
            own prediction at the level that matches the series' sum (the error is a share of the TRUE revenue, as
            in a gamma GLM): scaled by the measurement itself, the low weeks would weigh most and a shape that misses
            the pattern would learn a level biased low (mean ratio 1/E[1/ratio])."""
            tot, ysum = M.sum(1), np.abs(Y).sum(0)
            ok = tot > 1e-6 * np.maximum(ysum, 1e-300)  # a column with (next to) no revenue keeps its prior level
            th = np.where(ok, ysum / np.where(ok, tot, 1.0), m0).clip(0.0)
            u = np.maximum(np.abs(th[:, None] * M), self.floor)
            sig = np.full_like(self.sig, CHANNEL_NOISE)
            for _ in range(2):  # levels at the prior noise, then the noise from their residuals, then the levels again
                mean = levels(M, u, sig)[3]
                rel = ((Y[None] - mean[:, None] * M) / u) ** 2  # (K, t, C) squared relative residuals
                sig = np.sqrt((NOISE_PRIOR_WEEKS * CHANNEL_NOISE ** 2 + rel.sum(1)) / (NOISE_PRIOR_WEEKS + t))
            G, r, P, mean = levels(M, u, sig)
            # log evidence of each draw: Gaussian marginal of the channel series with the level integrated out (its
            # quadratic form as the fit's residuals plus the prior's, without cancellation)
            q = ((r - G * mean[:, None]) ** 2).sum(1) + p0 * (mean - m0) ** 2
            ll = -0.5 * (np.log(P / p0) + q) - t * np.log(sig) - np.log(u).sum(1)
            return P, mean, sig, ll

        fits = [fitted(self._variant_cols(Ms, v)) for v in range(len(self.variants))]
        nv = len(self.variants)
        # prior over each channel's form: half on the fit's own, the rest shared by the alternatives
        lp = np.full(nv, np.log((1 - PRIOR_OWN) / max(nv - 1, 1)))
        lp[self.default] = np.log(PRIOR_OWN)
        ll_v = np.stack([f[3] for f in fits]) + lp[:, None, None]  # (V, K, C)
        if t >= NOISE_PRIOR_WEEKS:  # the variant each channel's summaries (fits, rel_sd, pulses) read: best evidence
            self.variant = logsumexp(ll_v, axis=1).argmax(0)  # each form's evidence averaged over the draws
        self.all_m, self.all_sd = np.stack([f[1] for f in fits]), np.stack([1 / np.sqrt(f[0]) for f in fits])
        pick = lambda i: np.stack([fits[v][i][:, c] for c, v in enumerate(self.variant)], 1)  # noqa: E731
        P, mean, sig, ll = (pick(i) for i in range(4))
        self.m, self.Pc, self.sig, self.weeks = mean, P, sig, t
        self.V = np.stack([np.diag(1.0 / pk) for pk in P])
        if not EVIDENCE:
            return
        # channels are separable: each channel's (form, draw) pairs are weighed by its own series, tempered to keep
        # ESS_MIN x K of them effective (the planning slots mix channels); the draw's joint weight (the pulses'
        # information, `sample`) by all channels in their chosen forms
        flat = ll_v.reshape(nv * self.ens.K, -1) if t >= NOISE_PRIOR_WEEKS else None
        self.wc = None if flat is None else np.column_stack(
            [tempered_weights(flat[:, c], ESS_MIN / nv)[0] for c in range(flat.shape[1])])
        self.w, _ = tempered_weights(ll.sum(1), ESS_MIN)

    def sample(self, ens: Ensemble, rng: np.random.Generator) -> Curves:
        """One posterior sample: each channel's (form, draw) pair drawn by its weights, its level from its posterior."""
        if self.wc is None:
            return super().sample(ens, rng)
        C = self.ens.C
        pairs = np.array([rng.choice(len(self.wc), p=self.wc[:, c] / self.wc[:, c].sum()) for c in range(C)])
        return self._slots(ens, pairs[None], rng.standard_normal((1, C))).worlds[0]

    def planning(self, ens: Ensemble, z: np.ndarray | None = None) -> Ensemble:
        """As LevelPosterior.planning (ens: the posterior's columns over the rest of the loop, `columns`), each
        planning slot's channel c a (form, draw) pair resampled by channel c's own weights (systematic, the same
        offsets every week), at that form's level: its half-saturation and size, its delay (the multiplier of week j
        is that of week j + d, zero past the loop's end: that revenue is not realised inside the horizon) and its
        multiplier. Before NOISE_PRIOR_WEEKS weeks: the draws in the fit's own form."""
        K, C = self.ens.K, self.ens.C
        if self.wc is None:
            return super().planning(ens, z)
        u = (np.arange(K) + 0.5) / K
        idx = np.stack([np.minimum(np.searchsorted(np.cumsum(self.wc[:, c]), u), len(self.wc) - 1)
                        for c in range(C)], 1)  # (K, C) into (form, draw) pairs
        return self._slots(ens, idx, z)

    def _slots(self, ens: Ensemble, idx: np.ndarray, z: np.ndarray | None) -> Ensemble:
        """The curves of slots idx (S, C): channel c of slot i in (form, draw) pair idx[i, c], at its level's
        posterior mean (+ sd x z[i, c])."""
        K, C = self.ens.K, self.ens.C
        T, n = self.own.shape[1], ens.T
        src0 = np.arange(T - n, T)
        out, delay = [], np.zeros(idx.shape, int)
        for i in range(len(idx)):
            decay, half, slope, beta, init = (np.zeros(C) for _ in range(5))
            mult = np.zeros((n, C))
            for c in range(C):
                v, k = divmod(int(idx[i, c]), K)
                f, d, j = self.variants[v]
                delay[i, c] = d
                w = ens.worlds[k]
                level = self.all_m[v, k, c] + (0.0 if z is None else self.all_sd[v, k, c] * z[i, c])
                decay[c], slope[c], init[c] = w.decay[c], w.slope[c], w.init[c]
                half[c] = w.half[c] * HALF[f]
                beta[c] = w.beta[c] * self.size_f[f][k, c] * max(level, 0.0)
                src = src0 + d
                mult[:, c] = np.where(src < T, self.mults[j][k, np.minimum(src, T - 1), c], 0.0)
            out.append(Curves(decay, half, slope, beta, mult, init))
        return Ensemble(out, delay=delay)  # a slot's channel with d > 0 realises none of a week's spend in that week
