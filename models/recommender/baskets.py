"""Next-basket signals from a user's basket history, and the three repeat baselines the literature says are hard to
beat (Li et al., "A Next Basket Recommendation Reality Check", TOIS 2023), implemented from their papers:

- **buy-again** (personal top frequency): how many of the user's baskets held the item; ties by popularity;
- **TIFU-KNN** (Hu et al., SIGIR 2020): baskets grouped in time order into groups of `m`; inside a group a basket
  weighs r_b^(steps before the group's last basket), groups weigh r_g^(groups before the last one); the user vector
  is the weighted mean; the prediction blends it with the mean vector of the user's `k` nearest users (cosine):
  alpha * u + (1 - alpha) * mean(neighbours);
- **UP-CF@r** (Faggioli et al., UMAP 2020): recency-aware user-wise popularity (share of the user's last `r`
  baskets holding the item), spread over users similar by asymmetric cosine (exponent `asym`) raised to the
  locality `q`: score(u, i) = sum_v sim(u, v)^q pop_v(i), the user itself included.

They are the re-buy signals our own ranking uses too (frequency, recency, personal cycle, neighbour smoothing), so
the pure functions here serve both the benchmark and `core.Recommender`. Users x users similarities are computed in
chunks of sparse products: cost grows with users x co-buyers, fine for the 10^4-user worlds we test on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from omnidecide.models.recommender.memo import memo
from omnidecide.models.recommender.rows import dense_rows, entries, gather, scatter
from omnidecide.models.recommender.threads import each, workers

DAY = 86400.0


@dataclass
class Baskets:
    """Every basket of every user as rows of a binary basket x item matrix, sorted by user then time."""

    B: sp.csr_matrix       # baskets x items, 1 where the basket holds the item
    user: np.ndarray       # user index per basket
    time: np.ndarray       # basket time (seconds, any origin)
    n_users: int

    @classmethod
    def from_purchases(cls, u: np.ndarray, i: np.ndarray, t: np.ndarray, basket: np.ndarray | None,
                       n_users: int, n_items: int) -> "Baskets":
        """Purchases (user, item, time, optional basket key) -> baskets. Without a key, one basket per user-day."""
        key = np.floor(np.asarray(t, float) / DAY).astype(np.int64) if basket is None else np.asarray(basket)
        df = pd.DataFrame({"u": u, "i": i, "t": t, "k": key})
        first = df.groupby(["u", "k"], sort=False)["t"].transform("min")
        df = df.assign(t0=first).sort_values(["u", "t0", "k"], kind="stable")
        bid = df.groupby(["u", "t0", "k"], sort=False).ngroup().to_numpy()
        n_b = int(bid.max()) + 1 if len(bid) else 0
        B = sp.csr_matrix((np.ones(len(df)), (bid, df["i"].to_numpy())), shape=(n_b, n_items))
        B.data[:] = 1.0  # an item twice in one basket counts once
        head = pd.DataFrame({"b": bid, "u": df["u"].to_numpy(), "t": df["t0"].to_numpy()}).drop_duplicates("b")
        return cls(B, head["u"].to_numpy(), head["t"].to_numpy(dtype=float), n_users)

    def position(self) -> tuple[np.ndarray, np.ndarray]:
        """(baskets of the basket's user, steps before that user's last basket) per basket."""
        n = np.bincount(self.user, minlength=self.n_users)
        start = np.concatenate([[0], np.cumsum(n)[:-1]])
        idx = np.arange(len(self.user)) - start[self.user]
        return n[self.user], n[self.user] - 1 - idx

    def aggregate(self, w: np.ndarray) -> sp.csr_matrix:
        """users x items: sum over each user's baskets of w[basket] * basket."""
        S = sp.csr_matrix((w, (self.user, np.arange(len(w)))), shape=(self.n_users, len(w)))
        return (S @ self.B).tocsr()


def frequency(bk: Baskets) -> sp.csr_matrix:
    """users x items: number of the user's baskets holding the item."""
    return bk.aggregate(np.ones(len(bk.user)))


def buy_again_scores(freq_rows: np.ndarray, pop: np.ndarray, top: float | None = None) -> np.ndarray:
    """Personal top frequency, ties and the rest of the list by popularity (pop >= 0; `top`: the catalogue's
    maximum when `pop` covers only some items)."""
    tie = pop / ((pop.max() if top is None else top) + 1e-12) * 0.99
    return np.where(freq_rows > 0, freq_rows + tie[None, :], tie[None, :] - 1.0)


def tifu_vectors(bk: Baskets, m: int = 7, r_b: float = 0.9, r_g: float = 0.7) -> sp.csr_matrix:
    """users x items TIFU user vectors (personal, before neighbour smoothing)."""
    n, back = bk.position()
    g_back = back // m                          # groups before the user's last group (the last group is full)
    n_groups = -(-n // m)
    size_of_group = np.where(g_back == n_groups - 1, n - (n_groups - 1) * m, m)
    w = r_b ** (back % m) * r_g ** g_back / size_of_group / n_groups
    return bk.aggregate(w)


NEIGHBOUR_POOL = 20_000  # above this many users, neighbours are searched among a random pool of this many


def pool_of(n: int, pool: int = 0, seed: int = 0) -> np.ndarray:
    """The users (sorted) `neighbours` searches among: all `n` up to `pool` (0: NEIGHBOUR_POOL), else a fixed
    seeded random pool of that many."""
    pool = pool or NEIGHBOUR_POOL
    return np.arange(n) if not 0 < pool < n else np.sort(np.random.default_rng(seed).choice(n, pool, replace=False))


def neighbours(V: sp.csr_matrix, k: int, chunk: int = 2048, pool: int = 0, seed: int = 0) -> np.ndarray:
    """users x k: each user's k most cosine-similar other users (rows of V), nearest first; -1 where fewer exist.
    Among more than `pool` users (0: NEIGHBOUR_POOL) the neighbours are searched among a fixed random pool of that
    many (seeded), not among all: all pairs of 1M customers are 10^12 similarities (a 50k-customer sample's 2.5 x 10^9
    took minutes), a pool of 10k 10^10 (~2 minutes of CPU)."""
    Vn = sp.csr_matrix(sp.diags(1.0 / np.maximum(np.sqrt(np.asarray(V.multiply(V).sum(1)).ravel()), 1e-12)) @ V)
    n = V.shape[0]
    among = pool_of(n, pool, seed)
    k = max(0, min(k, len(among) - 1))
    out = np.full((n, k), -1, dtype=np.int32)  # k x 4 bytes per user are stored with the model
    if k == 0:
        return out
    # the dense similarities of the chunks in flight (one per thread) stay <= 330 MB together
    chunk = max(64, min(chunk, 2048 * 20_000 // len(among)) // workers())
    Vp = Vn[among].T.tocsc() if len(among) < n else Vn.T

    def block(s: int) -> None:  # the rows s .. s + chunk (threads.each: each block writes its own rows)
        S = (Vn[s: s + chunk] @ Vp).toarray()
        if len(among) < n:  # a user is not its own neighbour
            pos = np.searchsorted(among, np.arange(s, s + S.shape[0]))
            mine = (pos < len(among)) & (among[np.minimum(pos, len(among) - 1)] == np.arange(s, s + S.shape[0]))
            S[np.flatnonzero(mine), pos[mine]] = -np.inf
        else:
            S[np.arange(S.shape[0]), np.arange(s, s + S.shape[0])] = -np.inf
        top = np.argpartition(-S, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), 1, kind="stable"), 1)  # nearest first
        out[s: s + chunk] = np.where(np.take_along_axis(S, top, 1) > 0, among[top], -1)

    each(block, range(0, n, chunk))
    return out


def smooth(V: sp.csr_matrix, nbrs: np.ndarray, users: np.ndarray, alpha: float,
           cols: np.ndarray | None = None) -> np.ndarray:
    """Dense rows alpha * V[u] + (1 - alpha) * mean of V over u's neighbours, for `users`; only the item columns
    `cols` (sorted) when given (serving scores a few hundred candidates, not the catalogue)."""
    users = np.asarray(users)
    nb = nbrs[users]
    valid = nb >= 0
    cnt = valid.sum(1)
    r, c, v = gather(V, nb[valid], cols)
    who = np.repeat(np.arange(len(users)), cnt)[r]  # the user whose neighbour each entry is
    shape = (len(users), V.shape[1] if cols is None else len(cols))
    return alpha * dense_rows(V, users, cols) + (1 - alpha) * scatter(who, c, v / np.maximum(cnt, 1)[who], *shape)


def smoothed(V: sp.csr_matrix, nbrs: np.ndarray, users: np.ndarray, alpha: float) -> sp.csr_matrix:
    """`smooth` as a sparse matrix: nonzero only on items the user or a neighbour bought."""
    nb = nbrs[users]
    valid = nb >= 0
    cnt = valid.sum(1)
    rows = np.repeat(np.arange(len(users)), cnt)
    M = sp.csr_matrix((1.0 / np.repeat(np.maximum(cnt, 1), cnt), (rows, nb[valid])), shape=(len(users), V.shape[0]))
    return sp.csr_matrix(alpha * V[users] + (1 - alpha) * (M @ V))


@dataclass
class TIFU:
    """TIFU-KNN fitted on a basket history: user vectors and neighbour lists; `scores(users)` is dense."""

    m: int = 7
    r_b: float = 0.9
    r_g: float = 0.7
    k: int = 300
    alpha: float = 0.7
    pool: int = 0  # > 0: neighbours searched among a random pool of this many users (the scale path; 0: all users)

    def settings(self) -> dict:
        out = {"m": self.m, "r_b": self.r_b, "r_g": self.r_g, "k": self.k, "alpha": self.alpha}
        return {**out, "pool": self.pool} if self.pool else out

    def fit(self, bk: Baskets) -> "TIFU":
        self.V = tifu_vectors(bk, self.m, self.r_b, self.r_g)
        self.nbrs = neighbours(self.V, self.k, pool=self.pool)
        return self

    def scores(self, users: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        users = np.asarray(users)
        if cols is not None and len(users) == 1:  # a request: from the candidates' buyers, not the neighbours' rows
            near = self.near_at(int(users[0]), cols)
            if near is not None:
                return self.alpha * dense_rows(self.V, users, cols) + (1 - self.alpha) * near[None, :]
        return smooth(self.V, self.nbrs[:, : self.k], users, self.alpha, cols)

    def near_at(self, user: int, cols: np.ndarray) -> np.ndarray | None:
        """`smooth`'s neighbour mean of `user` at the items `cols` (sorted), to the bit: each item's sum runs over the
        neighbours in their stored order, as `smooth`'s does. Why: `smooth` gathers all ~300 neighbours' rows to keep
        the few entries at a request's ~50 candidates (~0.2 ms in a request's flow); here the candidates' own rows of
        the pool's items x users matrix (per V: a few MB at 1M customers, whose neighbours come from a pool of 10^4)
        give their buyers, kept where they are neighbours. None when a neighbour lies outside `pool_of` (a version
        whose neighbours were searched otherwise): `smooth` then answers."""
        nb = self.nbrs[user, : self.k]
        nb = nb[nb >= 0]
        V, among, by_item = self._by_item()
        if len(among) < V.shape[0]:  # a pool: each neighbour's position in it
            pos = np.minimum(np.searchsorted(among, nb), max(len(among) - 1, 0))
            if len(nb) and not np.array_equal(among[pos], nb):
                return None
        else:
            pos = nb
        rank = np.full(len(among), -1, dtype=np.int64)  # the neighbour's place among the user's, by pool position
        rank[pos] = np.arange(len(nb))
        c = cols if not len(cols) or cols[-1] < by_item.shape[0] else cols[cols < by_item.shape[0]]  # live: no buyers
        at, lens = entries(by_item, c)  # the candidates' entries
        r = rank[by_item.indices[at]]
        keep = r >= 0
        col = np.repeat(np.arange(len(c)), lens)[keep]
        o = np.argsort(col * len(nb) + r[keep])  # per item, its neighbours in order, as `smooth`'s scatter adds
        return np.bincount(col[o], weights=by_item.data[at[keep]][o] / max(len(nb), 1), minlength=len(cols))

    @classmethod
    def stored(cls, settings: dict, z, shape: tuple[int, int], made: dict | None = None) -> "TIFU":
        """The fitted state stored with a version (`Recommender.load`: arrays `tifu_*` of `z`, users x items `shape`).
        `made`: `pool_arrays` made once for the version (models/recommender/shared.py), used instead of each
        process making its own copy of the items x pool matrix."""
        out = cls(**settings)
        out.V = sp.csr_matrix((z["tifu_data"], z["tifu_indices"], z["tifu_indptr"]), shape=shape)
        out.nbrs = z["tifu_nbrs"]
        made = made or {}
        among = made.get("tifu_pool")
        if among is not None and len(made["tifu_pool_indptr"]) == shape[1] + 1:
            by_item = sp.csr_matrix((made["tifu_pool_data"], made["tifu_pool_indices"], made["tifu_pool_indptr"]),
                                    shape=(shape[1], len(among)))
            memo(out, "items by pool", (out.V,), lambda: (out.V, among, by_item))
        return out

    def pool_arrays(self) -> dict[str, np.ndarray]:
        """`_by_item`'s pool and items x pool matrix as arrays, for `stored`'s `made`."""
        _, among, by_item = self._by_item()
        return {"tifu_pool": among, "tifu_pool_data": by_item.data, "tifu_pool_indices": by_item.indices,
                "tifu_pool_indptr": by_item.indptr}

    def _by_item(self) -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix]:
        """(V, the pool `neighbours` searched, items x pool users of V), made once per V (a version grown by live
        items gets a padded V: `extend`)."""
        V = self.V

        def compute():
            among = pool_of(V.shape[0], self.pool)
            return V, among, sp.csr_matrix(V[among].T)
        return memo(self, "items by pool", (V,), compute)

    def sparse_scores(self, users: np.ndarray) -> sp.csr_matrix:
        return smoothed(self.V, self.nbrs[:, : self.k], np.asarray(users), self.alpha)

    def top_items(self, user: int, n: int) -> np.ndarray:
        """The `n` items of `user`'s highest scores, best first, ties by item index (`top_of`): the nonzero entries
        of `sparse_scores([user])`, to the bit, from the user's and their neighbours' rows alone. Why: a request
        asks for one customer, and scipy's sparse product and sum for one row walk catalogue- and customer-wide
        arrays (~0.8 ms, a fifth of /recommend's model time at 200k items x 1M customers; docs/BENCHMARKS.md).
        The sums run in scipy's order (neighbours by user index, each row as stored), so the values are the same."""
        nb = self.nbrs[user, : self.k]
        nb = np.sort(nb[nb >= 0])  # `smoothed`'s weight matrix holds them by column, i.e. by user index
        s, e = self.V.indptr[user], self.V.indptr[user + 1]
        _, c, v = gather(self.V, nb)
        items = np.concatenate([self.V.indices[s:e], c])
        if not len(items):
            return np.zeros(0, dtype=np.int64)
        uniq, at = np.unique(items, return_inverse=True)
        own = np.bincount(at[: e - s], weights=self.alpha * self.V.data[s:e], minlength=len(uniq))
        near = np.bincount(at[e - s:], weights=(1.0 / max(len(nb), 1)) * v, minlength=len(uniq))  # in order
        score = own + (1 - self.alpha) * near
        keep = score != 0  # scipy stores no zero
        return top_of(uniq[keep], score[keep], n)


def top_of(items: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The `n` items of the highest values, best first, ties by item index (one rule for serving's and tuning's
    TIFU candidates; the order of a scipy row's entries is an implementation detail)."""
    return items[np.lexsort((items, -values))[:n]]


def recent_popularity(bk: Baskets, r: int | None) -> sp.csr_matrix:
    """users x items: share of the user's last r baskets (all when r is None) that hold the item."""
    n, back = bk.position()
    window = n if r is None else np.minimum(n, r)
    return bk.aggregate(np.where(back < window, 1.0 / window, 0.0))


@dataclass
class UPCF:
    """UP-CF@r fitted on a basket history; `scores(users)` is dense."""

    r: int | None = None
    asym: float = 0.5
    q: float = 5.0

    def fit(self, bk: Baskets) -> "UPCF":
        self.P = recent_popularity(bk, self.r)
        H = frequency(bk)
        H.data[:] = 1.0
        self.H = H
        self.size = np.asarray(H.sum(1)).ravel()
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        inter = (self.H[users] @ self.H.T).toarray()
        den = np.maximum(self.size[users][:, None], 1) ** self.asym * np.maximum(self.size[None, :], 1) ** (1 - self.asym)
        sim = (inter / den) ** self.q
        return (sp.csr_matrix(sim) @ self.P).toarray()
