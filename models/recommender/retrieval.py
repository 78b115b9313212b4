"""Candidate retrieval for the graph filter at serving time: a faiss index over item vectors, a few hundred candidates
per request, then the exact stage-1 score, rules and ranker on those only.

Why it is exact up to the index: the rational filter's score of item j is an inner product,
    s_j = sum_m (r d^-c Q)_m h_m Q_jm d_j^c = <u, e_j>,  u = (r d^-c Q) * h,  e_j = Q_j * d_j^c,
so ranking a catalogue is maximum-inner-product search over e_j. The index is faiss HNSW with the inner-product metric
(a navigable graph over the items, exact inner products on the visited ones). Tried first and dropped: IVF-Flat with
L2 after the one-extra-coordinate reduction (top-20 recall 0.75 on a 2,000-item scale world), IVF-Flat with inner
products (0.70 on the test graph with 8 of 20 cells probed); HNSW found 1.00 on both.

What else makes the candidate scores equal to full scoring's: the per-user mean and spread of the scores over the
whole catalogue, which stage 1 z-scores with, come exactly from the item vectors' sum and second-moment matrix; a
cold item's score (its category's mean over warm items) from per-category sums of the same vectors. Items the
nearest-neighbour search cannot see are added to the candidates: the customer's own items (re-buys, fresh events),
the first cold items of each category (they tie within a category, so later ones never rank above them), the top of
the TIFU basket score and of popularity when stage 1 weighs them in. What the index misses is the only difference.

The index is built once when the version is saved (training) and stored with it (`items.faiss`): every worker and
replica then searches the same graph (a multi-threaded HNSW build is not reproducible), and a worker starts in
seconds instead of rebuilding (45 s at 200k items). Catalogues below `MIN_ITEMS` are scored in full, which costs
about the same there (bench/recommend_paths.py measures both paths).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from omnidecide.models.recommender.context import POP_HALF_LIFE_DAYS
from omnidecide.models.recommender.graph_filter import DENSE_MAX_ITEMS
from omnidecide.models.recommender.item_index import (  # noqa: F401
    LARGE_ITEMS,
    ItemIndex,
    filter_vectors,
    queries,
    recall_at,
)
from omnidecide.models.recommender.memo import memo  # what a request needs per catalogue state, not per request

# Requests go through the index above graph_filter.DENSE_MAX_ITEMS (4,000) items, where the factors are truncated to
# `max_eig` components. Below it every eigenpair is kept (up to thousands), the exact moments cost m^2 per request,
# and full scoring stayed cheaper at every size up to it: measured in bench/recommend_paths.py (docs/BENCHMARKS.md).
MIN_ITEMS = DENSE_MAX_ITEMS + 1
# nearest-neighbour candidates per request (at least what the ranking looks at: 100 at k = 20) and the HNSW search
# breadth. The search is the largest single cost of a request's model path; at 10,000 items 100 / 100 (over 8-bit
# codes, `ItemIndex`) keeps /recommend's lists at 0.99975 top-20 overlap with those of 128 / 128 on 1,000 customers
# (99.5% identical; 128 / 128 had 0.9995 with 150 / 160 over float vectors, 100 / 100 0.9992) for ~0.3 CPU ms less per
# request (docs/BENCHMARKS.md). Tuning's exact candidates (training/recommender/evaluation.py) stay at 128.
N_ANN = 100
EF_SEARCH = 100
# above LARGE_ITEMS the earlier, wider search stays (200 candidates, at least 2x the ranking's, efSearch 256): the
# 200k-item figures (index recall 0.972, overlap 0.98) were measured with it, and fewer were not measured there
N_ANN_LARGE, EF_SEARCH_LARGE = 200, 256
FILE = "items.faiss"
# `substitutes` keeps the head of each sold-out item's category order: up to 4,096 items x 256 (8 MB)
SUBSTITUTE_ORDERS, SUBSTITUTE_HEAD = 4096, 256


def groups(idx: np.ndarray, group: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """For each group value 0..n_groups-1, the entries of `idx` in it (group aligned with idx), in idx's order."""
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(n_groups + 1))
    return [idx[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


def similar_first(rec, j: int, same: np.ndarray) -> np.ndarray:
    """`same` (j's category, in index order) ordered by embedding similarity to j, most similar first, ties by index.
    Both scoring paths take a sold-out item's substitute from this one product over the whole category: BLAS rounds
    a row's dot product by where the row sits in the matrix, so a product over the free items alone could break a
    tie between two items with equal embeddings (two new items of one category) the other way."""
    emb = rec.embeddings()
    return same[np.argsort(-(emb[same] @ emb[j]), kind="stable")]


class Retrieval:
    """One version's candidate retrieval: the index over its trained items' filter vectors, plus what makes the
    candidates' scores exact (see the module docstring). Works on the version's catalogue grown by live items
    (`extend.with_items`): those are cold (e_j = 0) and reach the candidates through their category."""

    # the last query and its moments, by content (`query_moments`); a class default, so that a subclass which skips
    # __init__ (training's ExactCandidates: no index) starts with an empty one too. Valid per object: its filter is fixed
    _last: tuple = (None, None)

    def __init__(self, rec, index=None, made: dict[str, np.ndarray] | None = None) -> None:
        g = rec.graph
        p = g.params
        self.keep, self.h = p.kept(g.lam)
        self.c, self.n_trained = p.c, g.Q.shape[0]
        if not self.matches(index, self.n_trained, len(self.keep)):
            index = None
        E = self.item_vectors(g.Q, g.lam, g.d_graph, p) if index is None else None
        self.scale = g.d_graph[: self.n_trained] ** (-2 * self.c)  # e_j d_j^-2c = Q_j d_j^-c, the query side
        # `made`: `made_once`'s moments and codes, made once for many processes (models/recommender/shared.py)
        made = made or {}
        self.items = ItemIndex(E, index=index, moments=(made["total"], made["second"]) if "total" in made else None,
                               codes=made.get("codes") if index is not None else None)
        # e_j = Q_j d_j^c of the trained items: the index's own float32 copy, as in tuning (ExactCandidates). A request
        # reads a few hundred rows of it; a float64 copy beside it (40 MB at 10,000 items x 512) doubled the memory
        # each read moved, and its rows were not the ones the search had just brought into cache
        self.E = self.items.vectors
        import faiss
        # one request searches one query: OpenMP threads only spin-wait on a busy machine (one worker per core)
        faiss.omp_set_num_threads(1)

    def cold(self, rec) -> tuple[np.ndarray, bool, list[np.ndarray]]:
        """(cold mask over the catalogue, whether warm and cold items both exist, the cold items of each non-empty
        category in index order), per catalogue state (at 200k items with few customers most items are cold, and
        sorting them by category on every request cost ~15 ms)."""
        def compute():
            cold = rec.graph.d_item < 1e-6
            idx = np.flatnonzero(cold)
            per_cat = [c for c in groups(idx, rec.item_cat[idx], len(rec.categories)) if len(c)]
            return cold, bool(cold.any() and (~cold).any()), per_cat
        return memo(self, "cold", (rec.graph.d_item, rec.item_cat), compute)

    @staticmethod
    def item_vectors(Q: np.ndarray, lam: np.ndarray, d_graph: np.ndarray, p) -> np.ndarray:
        """e_j = Q_j d_j^c of the trained items over the filter's kept components (`p`: its FilterParams), kept
        whole: a request reads a few hundred rows of it instead of scaling rows of Q each time (items x components
        float64: 40 MB at 10,000 items x 512, 0.4 GB at 200k x 256)."""
        keep, _ = p.kept(lam)
        Qk = Q if len(keep) == Q.shape[1] else Q[:, keep]
        return np.ascontiguousarray(Qk * (d_graph[: Q.shape[0]] ** p.c)[:, None])

    @classmethod
    def made_once(cls, folder: Path, Q: np.ndarray, lam: np.ndarray, d_graph: np.ndarray, p) -> dict[str, np.ndarray]:
        """What every process that loads the version in `folder` derives alike and would otherwise make itself
        (`__init__`'s `made`): the item vectors' moments, from the stored index's float32 vectors (memory-mapped, as
        every process then reads them) when it matches the factors `Q`, `lam` (its FilterParams `p`), else from the
        vectors the factors give; with a matching index also the 8-bit codes its search walks (`ItemIndex.codes_of`;
        without one each process builds its own index, and its codes with it)."""
        index = cls.stored(folder)
        matched = cls.matches(index, Q.shape[0], len(p.kept(lam)[0]))
        E = ItemIndex.stored_vectors(index) if matched else cls.item_vectors(Q, lam, d_graph, p)
        total, second = ItemIndex.moments_of(E)
        return {"total": total, "second": second, **({"codes": ItemIndex.codes_of(E)} if matched else {})}

    @staticmethod
    def wanted(rec) -> bool:
        return rec.graph.Q is not None and len(rec.item_ids) >= MIN_ITEMS

    @classmethod
    def build(cls, rec) -> "Retrieval":
        return cls(rec)

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self.items.index, str(Path(folder) / FILE))

    @staticmethod
    def matches(index, n_trained: int, dims: int) -> bool:
        """Whether a stored index was built over these factors: one vector per trained item, one dimension per kept
        component (a version saved before it, or with other factors, gets a new one)."""
        return index is not None and index.ntotal == n_trained and index.d == dims

    @staticmethod
    def stored(folder: Path):
        """The version's stored index, memory-mapped (faiss IO_FLAG_MMAP_IFC: read-only, searched in place, one copy
        in the page cache for every process that maps it); None when the version has none."""
        import faiss

        path = Path(folder) / FILE
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC) if path.exists() else None

    @classmethod
    def load(cls, folder: Path, rec, made: dict[str, np.ndarray] | None = None) -> "Retrieval":
        """The stored index (`stored`: service workers and a batch job's workers share its vectors); built here when
        the version predates it (or does not match its factors); the graph's links are read into each process.
        `made`: see __init__."""
        return cls(rec, cls.stored(folder), made)

    # --- vectors --------------------------------------------------------------------------------------
    def vectors(self, rec, items: np.ndarray) -> np.ndarray:
        """e_j for `items` of the current catalogue: items added live (beyond the trained ones) are cold, e_j = 0."""
        if not len(items) or items[-1] < self.n_trained:  # `items` sorted
            return self.E[items]
        out = np.zeros((len(items), self.E.shape[1]), dtype=self.E.dtype)
        old = items < self.n_trained
        out[old] = self.E[items[old]]
        return out

    def query(self, rec, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """u = (r d^-c Q) h for item signals `rows` (b x len(cols)) over the items `cols` (sorted)."""
        return self.query_moments(rec, rows, cols)[0]

    def query_moments(self, rec, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, mean, sd of <u, e_j> over the catalogue) for `rows` over `cols`. A request asks twice with the same
        signal (the candidates over the customer's items, then the scores over the candidates): the last answer is
        kept, keyed by the signal's content (its items and values), so the second ask is a lookup."""
        nz = np.flatnonzero(rows[0]) if len(rows) == 1 else np.flatnonzero(np.any(rows != 0, axis=0))
        c = cols[nz]
        c = c[c < self.n_trained]  # live items: e_j = 0
        vals = rows[:, nz[: len(c)]]
        key = (len(rec.item_ids), rows.shape[0], c.tobytes(), vals.tobytes())
        last_key, last = self._last
        if last_key == key:
            return last
        U = ((vals * self.scale[c]) @ self.E[c]) * self.h
        mean, sd = self.items.moments(U, len(rec.item_ids))
        self._last = (key, (U, mean, sd))
        return U, mean, sd

    # --- exact scores on candidates -------------------------------------------------------------------
    def graph_z(self, rec, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Stage 1's graph z (b x len(cols)), equal to full scoring's: z-scored over the whole catalogue, cold items
        at their category's mean over warm items less the novelty penalty."""
        from omnidecide.models.recommender.core import COLD_PENALTY

        U, mean, sd = self.query_moments(rec, rows, cols)
        sd = np.maximum(sd, 1e-12)[:, None]
        # the inner products in the item vectors' own precision (float32, as the index and tuning compute them):
        # casting the rows to float64 first cost more than the product
        Ue = U.astype(self.E.dtype)
        cold, mixed, _ = self.cold(rec)
        if not mixed:
            return (Ue @ self.vectors(rec, cols).T - mean[:, None]) / sd
        # cold columns take their category's value: their vectors are not read (candidates hold up to a hundred cold
        # items per category, and gathering their rows was most of a request's time at 20k items)
        c = cold[cols]
        z = np.empty((len(U), len(cols)))
        z[:, ~c] = (Ue @ self.vectors(rec, cols[~c]).T - mean[:, None]) / sd
        sums, cnt = self.category_sums(rec, cold)
        cat = (U @ sums.T - cnt[None, :] * mean[:, None]) / sd  # per user: sum of warm z by category
        cat_mean = np.where(cnt > 0, cat / np.maximum(cnt, 1), 0.0)
        z[:, c] = cat_mean[:, rec.item_cat[cols[c]]] - COLD_PENALTY
        return z

    def category_sums(self, rec, cold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per category: the sum of its warm items' vectors, and their count (per catalogue state)."""
        def compute():
            warm = np.flatnonzero(~cold)
            n_cat = len(rec.categories)
            onehot = sp.csr_matrix((np.ones(len(warm)), (rec.item_cat[warm], np.arange(len(warm)))),
                                   shape=(n_cat, len(warm)))
            return np.asarray(onehot @ self.vectors(rec, warm)), np.bincount(rec.item_cat[warm], minlength=n_cat)
        return memo(self, "category sums", (rec.graph.d_item, rec.item_cat), compute)

    # --- candidates -----------------------------------------------------------------------------------
    def nearest(self, rec, U: np.ndarray, n_rank: int) -> list[np.ndarray]:
        """The index's nearest items to each query row of `U`: `N_ANN` (at least n_rank; wider above LARGE_ITEMS)."""
        if len(rec.item_ids) > LARGE_ITEMS:
            _, idx = self.items.search(U, max(N_ANN_LARGE, 2 * n_rank), EF_SEARCH_LARGE)
        else:
            _, idx = self.items.search(U, max(N_ANN, n_rank), EF_SEARCH)
        return [row[row >= 0] for row in idx]

    def candidates(self, rec, uidx: int | None, hist: np.ndarray, rows: np.ndarray, usable: np.ndarray,
                   n_rank: int, k: int = 20, ann: np.ndarray | None = None) -> np.ndarray:
        """Sorted item indices to score for one user: the index's nearest `N_ANN` (at least n_rank; wider above
        LARGE_ITEMS) to the user's query, the user's own items `hist` (their signal `rows`, 1 x len(hist)), and what
        the index cannot see (module docstring).
        `usable`: in stock and not excluded; `n_rank`: how many candidates the ranking looks at; `k`: list length;
        `ann`: the user's `nearest` result when a batch searched many users at once (batch_score)."""
        parts = [hist]
        u = self.query(rec, rows, hist)
        if u.any():  # zero when the customer's items are all new (cold): their lists come from popularity
            if ann is None:
                ann = self.nearest(rec, u, n_rank)[0]
            parts.append(ann)
            # a sold-out item near the top gives its place to the most similar usable item of its category, found
            # over the whole category (rules): those join now, else the list is scored a second time with them
            top = ann[: 2 * k]
            parts += [self.substitutes(rec, int(j), usable, k + 1) for j in top[~usable[top]]]
        # ties within a category: the first cold ones (any stock: the ranker's pick; usable: the list's)
        first, whole = self.first_cold(rec, n_rank)
        parts.append(first)
        if not whole:  # some category holds more than n_rank cold items: its first usable ones may lie beyond
            parts += [c[usable[c]][:n_rank] for c in self.cold(rec)[2]]
        for hl in self.popularity_half_lives(rec, not u.any()):
            order = self.by_popularity(rec, hl)
            parts += [order[:n_rank], order[usable[order]][:n_rank]]
        if rec.stage.tifu_w > 0 and rec.tifu is not None and uidx is not None:
            parts.append(rec.tifu.top_items(uidx, n_rank))
        mark = np.zeros(len(rec.item_ids), dtype=bool)  # the sorted union: a mask, not np.unique's sort
        for p in parts:
            mark[p] = True
        return np.flatnonzero(mark)

    def first_cold(self, rec, n: int) -> tuple[np.ndarray, bool]:
        """(the first `n` cold items of every category, whether that is every cold item), per catalogue state."""
        def compute():
            per_cat = self.cold(rec)[2]
            return (np.concatenate([c[:n] for c in per_cat]).astype(np.int64) if per_cat else np.zeros(0, np.int64),
                    all(len(c) <= n for c in per_cat))
        return memo(self, f"first cold {n}", (rec.graph.d_item, rec.item_cat), compute)

    def substitutes(self, rec, j: int, usable: np.ndarray, n: int) -> np.ndarray:
        """The n usable items of j's category most similar to j (item embeddings), most similar first. The head of
        that order over j's whole category is kept per sold-out item (the same few come up on every request; at most
        `SUBSTITUTE_ORDERS` items, each up to `SUBSTITUTE_HEAD` long, then started afresh) and filtered by what is
        usable now; the whole category is sorted again only when the head holds too few usable items."""
        orders = memo(self, "substitute orders", (rec.item_cat, rec.embeddings()), dict)
        head = orders.get(j)
        if head is not None:
            got = head[usable[head]][:n]
            if len(got) == n or head.size < SUBSTITUTE_HEAD:  # the head was the whole category
                return got
        order = similar_first(rec, j, self.in_category(rec, int(rec.item_cat[j])))
        if len(orders) >= SUBSTITUTE_ORDERS:
            orders.clear()
        orders[j] = order[:SUBSTITUTE_HEAD]
        return order[usable[order]][:n]

    def in_category(self, rec, cat: int) -> np.ndarray:
        """The catalogue's items of category `cat`, in index order (the grouping kept per catalogue state: a scan of
        the catalogue per sold-out item cost ~0.2 ms at 200k items)."""
        return memo(self, "items by category", (rec.item_cat,),
                         lambda: groups(np.arange(len(rec.item_cat)), rec.item_cat, len(rec.categories)))[cat]

    @staticmethod
    def popularity_half_lives(rec, no_query: bool) -> list[float]:
        """Half-lives (days) of the popularity orders whose heads join the candidates: the stage's when stage 1 adds
        popularity; the 30-day one for buy-again's ties and the ranker, and when some customer has no query (only new
        items: their list is popularity). Tuning's candidates (training) take the same rule."""
        pops = [rec.stage.pop_hl] if rec.stage.pop_w > 0 else []
        if rec.stage.serve == "buy_again" or no_query:
            pops.append(POP_HALF_LIFE_DAYS)
        return list(dict.fromkeys(pops))

    def by_popularity(self, rec, half_life: float | None = None) -> np.ndarray:
        """Items by recent popularity at `half_life` days (default: the stage's `pop_hl`, the popularity stage 1
        adds; the 30-day one is "global"), most popular first, per popularity array."""
        hl = rec.stage.pop_hl if half_life is None else half_life
        pop = rec.pop.get(f"recent:{hl:g}", rec.pop["global"])
        return memo(self, f"by popularity {hl:g}", (pop,), lambda: np.argsort(-pop, kind="stable"))
