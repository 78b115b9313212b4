"""Response curves over one planning horizon (T periods x C channels), and the ensemble of them planned as one.

The media maths is models/response.py's (adstock + Hill); this module only lays it out for the optimiser: the
adstock of a whole plan as batched matrix products (dense T x T up to FULL_T periods, blocks beyond), the revenue
of a plan and its exact gradient. "Incremental revenue" of a plan = media revenue within the horizon with the plan
minus with zero spend (the carry-over already in the adstock at the start decays either way).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from omnidecide.models.response import hill, hill_and_derivative

FULL_T = 48  # up to this horizon: dense T x T adstock matrices per channel; longer: blocks (below)
BLOCK = 8  # block length for longer horizons (cost ~ T * BLOCK instead of T^2 per channel)


@dataclass
class _Dense:
    """Channel-major T x T adstock matrices: D (C, T, T) lower-triangular decay powers, DT its transpose, c0 (C, T)
    the carry-over of the starting adstock."""

    D: np.ndarray
    DT: np.ndarray
    c0: np.ndarray


@dataclass
class _Blocks:
    """The blocked adstock for long horizons: within-block decay matrices Dl (C, L, L), the block-to-block carry
    M (C, nb, nb) with M[b, j] = decay^(L (b - 1 - j)) for j < b, decay powers to carry a block's entry stock
    forward (pw) and back (pwb), and the start adstock carried to each block (c0, (C, nb)): the recursion is two
    batched matmuls, no Python loop over blocks (~1.7x faster than a loop at T = 104)."""

    T: int
    L: int
    nb: int
    Dl: np.ndarray
    DlT: np.ndarray
    M: np.ndarray
    MT: np.ndarray
    pw: np.ndarray
    pwb: np.ndarray
    c0: np.ndarray


@dataclass
class Curves:
    """Response curves for one planning horizon: per channel (C,) and per period (T,) season multiplier.
    Treated as immutable: derived curves (tail, scaled, channel, replicate) are new objects, so the cached
    constants below never go stale."""

    decay: np.ndarray
    half: np.ndarray
    slope: np.ndarray
    beta: np.ndarray
    mult: np.ndarray  # (T,) media multiplier per period (1 + m * peak), or (T, C)
    init: np.ndarray  # (C,) adstock at the start of the horizon

    @property
    def T(self) -> int:
        return len(self.mult)

    @property
    def C(self) -> int:
        return len(self.beta)

    @property
    def m2(self) -> np.ndarray:
        return self.mult if np.ndim(self.mult) == 2 else np.asarray(self.mult)[:, None]

    def tail(self, start: int, init: np.ndarray) -> "Curves":
        return Curves(self.decay, self.half, self.slope, self.beta, self.mult[start:], init)

    # --- cached constants of the horizon ------------------------------------------------------------
    @cached_property
    def _dense(self) -> _Dense:
        """Batched (T x T) matmuls per channel: ~5x faster than the equivalent einsum at T = 26."""
        lag = np.arange(self.T)[:, None] - np.arange(self.T)[None, :]
        D = np.where(lag[:, :, None] >= 0, self.decay[None, None, :] ** np.maximum(lag, 0)[:, :, None], 0.0)
        carry = self.decay[None, :] ** np.arange(1, self.T + 1)[:, None]
        return _Dense(np.ascontiguousarray(D.transpose(2, 0, 1)), np.ascontiguousarray(D.transpose(2, 1, 0)),
                      np.ascontiguousarray((carry * self.init).T))

    @cached_property
    def _bm(self) -> np.ndarray:
        """beta x season multiplier, channel-major (C, T)."""
        return np.ascontiguousarray((self.beta * np.broadcast_to(self.m2, (self.T, self.C))).T)

    @cached_property
    def _blocks(self) -> _Blocks:
        L = BLOCK
        nb = -(-self.T // L)
        d = np.asarray(self.decay, float)[:, None]
        lag = np.arange(L)[:, None] - np.arange(L)[None, :]
        Dl = np.where(lag[None] >= 0, d[:, :, None] ** np.maximum(lag, 0)[None], 0.0)  # (C, L, L)
        dL = d[:, 0] ** L
        bl = np.arange(nb)[:, None] - np.arange(nb)[None, :] - 1
        M = np.where(bl[None] >= 0, dL[:, None, None] ** np.maximum(bl, 0)[None], 0.0)  # (C, nb, nb)
        c0 = dL[:, None] ** np.arange(nb)[None] * np.asarray(self.init, float)[:, None]  # init carried to block b
        return _Blocks(self.T, L, nb, Dl, np.ascontiguousarray(Dl.transpose(0, 2, 1)), M,
                       np.ascontiguousarray(M.transpose(0, 2, 1)), (d ** np.arange(1, L + 1))[:, :, None],
                       (d ** np.arange(L, 0, -1))[:, :, None], c0)

    @cached_property
    def _zero(self) -> float:
        """Revenue of the carry-over alone (no spend): a constant of the horizon."""
        carry = self.decay[None, :] ** np.arange(1, self.T + 1)[:, None]
        return float((self.beta * self.h(carry * self.init) * self.m2).sum())

    # --- adstock and its adjoint --------------------------------------------------------------------
    def _by_block(self, a: np.ndarray) -> np.ndarray:
        """(C, T) -> (C, L, nb): column b is block b (zero-padded at the end)."""
        bk = self._blocks
        C = a.shape[0]
        if bk.nb * bk.L == bk.T:
            return a.reshape(C, bk.nb, bk.L).transpose(0, 2, 1)
        ap = np.zeros((C, bk.nb, bk.L))
        ap.reshape(C, bk.nb * bk.L)[:, :bk.T] = a
        return ap.transpose(0, 2, 1)

    def _stock_cm(self, xt: np.ndarray) -> np.ndarray:
        """Adstock (C, T) of channel-major spend xt (C, T), the carry-over of init included."""
        if self.T <= FULL_T:
            return np.matmul(self._dense.D, xt[:, :, None])[:, :, 0] + self._dense.c0
        bk = self._blocks
        loc = np.matmul(bk.Dl, self._by_block(xt))  # within-block adstock (C, L, nb)
        enter = np.matmul(bk.M, loc[:, -1, :, None])[..., 0] + bk.c0  # stock carried into each block (C, nb)
        return (loc + bk.pw * enter[:, None, :]).transpose(0, 2, 1).reshape(xt.shape[0], bk.nb * bk.L)[:, :bk.T]

    def _back_cm(self, g: np.ndarray) -> np.ndarray:
        """Adjoint of _stock_cm: back[c, s] = sum_{t >= s} decay^(t - s) g[c, t]."""
        if self.T <= FULL_T:
            return np.matmul(self._dense.DT, g[:, :, None])[:, :, 0]
        bk = self._blocks
        lb = np.matmul(bk.DlT, self._by_block(g))  # within-block (C, L, nb)
        later = np.matmul(bk.MT, lb[:, 0, :, None])[..., 0]  # what the blocks after b send back (C, nb)
        return (lb + bk.pwb * later[:, None, :]).transpose(0, 2, 1).reshape(g.shape[0], bk.nb * bk.L)[:, :bk.T]

    def stock(self, x: np.ndarray) -> np.ndarray:
        return self._stock_cm(np.ascontiguousarray(np.asarray(x, float).reshape(self.T, self.C).T)).T

    def h(self, a: np.ndarray) -> np.ndarray:
        """Saturation of adstock a (..., C) on these curves (models/response.py's Hill)."""
        return hill(a, self.half, self.slope)

    # --- revenue ------------------------------------------------------------------------------------
    def media(self, x: np.ndarray) -> np.ndarray:
        """(T, C) media revenue of spend x (the carry-over of init included, nothing subtracted)."""
        return self.beta * self.h(self.stock(x)) * self.m2

    def revenue(self, x: np.ndarray) -> np.ndarray:
        """(T, C) incremental revenue realised in each period from each channel."""
        x = np.asarray(x, float).reshape(self.T, self.C)
        return self.media(x) - self.media(np.zeros_like(x))

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        v, back = self._value_grad_cm(np.asarray(x, float).reshape(self.T, self.C).T)
        return v, back.T

    def _value_grad_cm(self, xt: np.ndarray) -> tuple[float, np.ndarray]:
        """value_grad on channel-major spend xt (C, T); the gradient comes back channel-major too."""
        h, dh = hill_and_derivative(self._stock_cm(xt), np.asarray(self.half, float)[:, None],
                                    np.asarray(self.slope, float)[:, None])
        return float((self._bm * h).sum() - self._zero), self._back_cm(self._bm * dh)

    def channel_revenue(self, c: int, X: np.ndarray) -> np.ndarray:
        """Channel c's total incremental revenue over the horizon for each of G spend profiles X (T, G): (G,)."""
        X = np.asarray(X, float).reshape(self.T, -1)
        return self.channel(c).replicate(X.shape[1]).revenue(X).sum(0)

    def end_stock(self, x: np.ndarray) -> np.ndarray:
        return self.stock(np.asarray(x, float).reshape(self.T, self.C))[-1] if self.T else self.init

    # --- derived curves -----------------------------------------------------------------------------
    def scaled(self, ratio: np.ndarray) -> "Curves":
        """Each channel's effect size multiplied by ratio (C,): curves recalibrated to realised ROI."""
        return Curves(self.decay, self.half, self.slope, self.beta * np.asarray(ratio, float), self.mult, self.init)

    def channel(self, c: int) -> "Curves":
        """Channel c alone (channels are separable)."""
        mult = self.mult[:, [c]] if np.ndim(self.mult) == 2 else self.mult
        return Curves(self.decay[[c]], self.half[[c]], self.slope[[c]], self.beta[[c]], mult, self.init[[c]])

    def replicate(self, n: int) -> "Curves":
        """Every channel repeated n times (channel-major): n independent copies to optimise side by side."""
        mult = np.repeat(self.mult, n, axis=1) if np.ndim(self.mult) == 2 else self.mult
        rep = lambda a: np.repeat(np.asarray(a, float), n)  # noqa: E731
        return Curves(rep(self.decay), rep(self.half), rep(self.slope), rep(self.beta), mult, rep(self.init))


class Ensemble:
    """K worlds (curves over the same T periods and C channels) planned as one: revenue = mean over worlds.
    Optimising it is planning for the expected revenue under the fit's uncertainty (sample average approximation)."""

    def __init__(self, worlds: list[Curves], delay: np.ndarray | None = None):
        self.worlds = list(worlds)
        K = len(worlds)
        # (K, C) weeks after which world k's channel c realises a week's spend (0: in that week). The loop posterior's
        # delayed-peak forms set it; the loop's weekly guard reads it (a channel with d > 0 earns nothing this week
        # from this week's spend). Derived ensembles (channel, scaled, ...) are the fit's own forms: 0.
        C = worlds[0].C
        self.delay = np.zeros((K, C), int) if delay is None else np.asarray(delay, int).reshape(K, C)
        cat = lambda f: np.concatenate([getattr(w, f) for w in worlds])  # noqa: E731
        mult = np.concatenate([np.broadcast_to(w.m2, (w.T, w.C)) for w in worlds], axis=1)
        self.stack = Curves(cat("decay"), cat("half"), cat("slope"), cat("beta") / K, mult, cat("init"))
        self.K, self.T, self.C = K, worlds[0].T, worlds[0].C

    def revenue(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float).reshape(self.T, self.C)
        return self.stack.revenue(np.tile(x, (1, self.K))).reshape(self.T, self.K, self.C).sum(1)

    def per_world(self, x: np.ndarray) -> np.ndarray:
        """(K, T, C) incremental revenue of plan x in each world."""
        x = np.asarray(x, float).reshape(self.T, self.C)
        return self.K * self.stack.revenue(np.tile(x, (1, self.K))).reshape(self.T, self.K, self.C).transpose(1, 0, 2)

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        xt = np.asarray(x, float).reshape(self.T, self.C).T
        v, g = self.stack._value_grad_cm(np.tile(xt, (self.K, 1)))  # stack columns are world-major: k * C + c
        return v, g.reshape(self.K, self.C, self.T).sum(0).T

    def channel(self, c: int) -> "Ensemble":
        return Ensemble([w.channel(c) for w in self.worlds])

    def scaled(self, ratio: np.ndarray) -> "Ensemble":
        return Ensemble([w.scaled(ratio) for w in self.worlds])

    def reweighted(self, weights: np.ndarray) -> "Ensemble":
        """Expected revenue under weights over the worlds instead of the plain mean: (K,) or (K, C) (per channel),
        each column summing to 1. World k's channel c is scaled by K * w[k, c] (the stack divides by K); worlds with
        no weight left on any channel are dropped."""
        w = np.asarray(weights, float)
        w = np.broadcast_to(w[:, None] if w.ndim == 1 else w, (self.K, self.C))
        keep = np.flatnonzero(w.max(1) > 1e-6 * w.max())
        K = len(keep)
        return Ensemble([self.worlds[k].scaled(K * w[k] / w[keep].sum(0).clip(1e-300)) for k in keep])

    def replicate(self, n: int) -> "Ensemble":
        return Ensemble([w.replicate(n) for w in self.worlds])

    def channel_revenue(self, c: int, X: np.ndarray) -> np.ndarray:
        """Expected (mean over worlds) incremental revenue of channel c for each spend profile X (T, G): (G,)."""
        X = np.asarray(X, float).reshape(self.T, -1)
        return self.channel(c).replicate(X.shape[1]).revenue(X).sum(0)
