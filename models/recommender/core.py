"""The recommender as one object: id maps, user histories, the graph filter (GF-CF family), the re-buy signals
(learned item cycles, TIFU-style neighbour-smoothed basket history), context popularity, catalogue (category,
stock). Pure model code: frames in, arrays out. Business rules applied at inference live in `rules`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from omnidecide.models.recommender.baskets import TIFU, Baskets, buy_again_scores
from omnidecide.models.recommender.blend import blend_ease, combine, fit_ease, zscore
from omnidecide.models.recommender.context import (POP_HALF_LIFE_DAYS, POP_HALF_LIVES, SEGMENTS,  # noqa: F401
                                                   context_popularity, side_nodes)
from omnidecide.models.recommender.graph_filter import FilterParams, GraphFilterCF
from omnidecide.models.recommender.repeat import DAY, RepeatModel, personal_gap
from omnidecide.models.recommender.rows import dense_rows

# Edge weight per event type (the strongest event of a user-item pair sets the edge).
EVENT_WEIGHTS = {"purchase": 1.0, "rating": 1.0, "cart": 0.6, "click": 0.35, "view": 0.2, "coupon_redeem": 0.2,
                 "coupon_claim": 0.1}
CONSUMED = ("purchase", "rating")  # after these a buy-once item is not recommended again
COLD_PENALTY = 0.5  # a new item's graph z: its category's mean over warm items, less this novelty penalty


# prefix of the arrays derived from a version once for many processes (Retrieval.made_once, TIFU.pool_arrays) among
# `Recommender.load`'s arrays (models/recommender/shared.py); never in recommender.npz
SHARED = "made|"
SERVE = ("model", "buy_again")  # what ranks a known user's list; chosen on validation by the training pipeline


@dataclass
class StageParams:
    rep_weight: float = 1.0  # how strongly a due re-buy (learned item cycle) competes with a discovery item
    graph_shift: float = 3.0   # discovery score = sigmoid(z_graph - shift)
    tifu_w: float = 0.0      # weight of the user's TIFU basket score (scaled to 1 per user) added on top
    pop_w: float = 0.0       # weight of recent popularity (z-scored log) added to the graph z before the sigmoid
    pop_hl: float = POP_HALF_LIFE_DAYS  # that popularity's half-life in days (one of POP_HALF_LIVES)
    ease_w: float = 0.0      # weight of the EASE score (z-scored) blended into the graph z; 0: no EASE is fitted
    ease_lam: float = 300.0  # EASE's L2 penalty
    serve: str = "model"     # "buy_again": the plain personal-frequency list served instead (it won on validation)


@dataclass
class UserRows:
    """A batch of users' state over the catalogue (b x items each)."""

    rows: np.ndarray   # edge weights (strongest event per item)
    cons: np.ndarray   # bought or rated (bool)
    nb: np.ndarray     # purchase count
    lb: np.ndarray     # last purchase time, seconds since t0 (-1: never)
    fb: np.ndarray     # first purchase time, seconds since t0 (-1: never)
    tifu: np.ndarray   # TIFU-KNN score of the user's basket history (0 without one)

    def personal_gap(self) -> np.ndarray:
        """Mean days between the user's purchases of each item (nan below two purchases)."""
        return personal_gap(self.nb, self.lb, self.fb)


def seconds(ts: pd.Series) -> np.ndarray:
    """Unix seconds of a datetime64 column (vectorised)."""
    return (pd.to_datetime(ts) - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(dtype=float)




@dataclass
class Recommender:
    user_ids: np.ndarray
    item_ids: np.ndarray
    X: sp.csr_matrix                 # user x item edge weights
    consumed: sp.csr_matrix          # user x item 1 where bought/rated
    n_buy: sp.csr_matrix             # user x item purchase counts
    last_buy: sp.csr_matrix          # user x item last purchase time (seconds since t0, +1)
    t0: float
    t_end: float                     # last event time (seconds since t0): "now" for batch recommendations
    first_buy: sp.csr_matrix         # user x item first purchase time (seconds since t0, +1)
    graph: GraphFilterCF
    repeat: RepeatModel
    item_cat: np.ndarray             # category index per item
    categories: np.ndarray
    stock: np.ndarray                # global stock per item (inf when unknown)
    pop: dict                        # "global" -> array, "channel:<c>" -> array, "store:<s>" -> array
    stage: StageParams = field(default_factory=StageParams)
    titles: np.ndarray | None = None
    price: np.ndarray | None = None
    no_consent: set = field(default_factory=set)
    ranker: object | None = None     # optional second stage (models.recommender.ranker.SecondStage)
    retrieval: object | None = None  # candidate retrieval for big catalogues (models.recommender.retrieval.Retrieval)
    side: sp.csr_matrix | None = None  # side-information nodes x items (build time only, for refits while tuning)
    tifu: TIFU | None = None         # fitted on the purchase baskets; None without purchases
    baskets: Baskets | None = None   # the purchase baskets (build time only, for refits while tuning)
    ease: np.ndarray | None = None   # items x items EASE weights when stage.ease_w > 0 (small catalogues only)

    def __post_init__(self) -> None:
        self.user_index = {u: n for n, u in enumerate(self.user_ids)}
        self.item_index = {i: n for n, i in enumerate(self.item_ids)}
        self._emb = None

    # --- construction ------------------------------------------------------------------------------------
    @classmethod
    def build(cls, events: pd.DataFrame, items: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
              params: FilterParams | None = None, stage: StageParams | None = None,
              tifu: TIFU | None = None) -> "Recommender":
        """`tifu`: TIFU-KNN settings (unfitted) for the basket signal; default settings when None."""
        keep = events["item_id"].notna() & events["event"].isin(list(EVENT_WEIGHTS))
        ev = events if keep.all() else events[keep]  # no copy of a 50M-row frame that loses nothing (~2 GB)
        item_ids = pd.Index(sorted(set(ev["item_id"].unique()) | (set(items["item_id"]) if items is not None else set())))
        user_ids = pd.Index(sorted(ev["user_id"].unique()))
        u = user_ids.get_indexer(ev["user_id"])
        i = item_ids.get_indexer(ev["item_id"])
        ts = ev["timestamp"]
        secs = seconds(ts)
        t0 = float(secs.min()) if len(ts) else 0.0
        t = secs - t0
        w = ev["event"].map(EVENT_WEIGHTS).to_numpy(dtype=float)
        shape = (len(user_ids), len(item_ids))
        is_buy = (ev["event"] == "purchase").to_numpy(dtype=bool)
        # the strongest event per user-item pair: events sorted by pair, the max of each run (a pandas groupby over
        # 50M rows, with the event names as a string column beside it, peaked ~5 GB higher)
        n_i = max(len(item_ids), 1)
        pk = u.astype(np.int64) * n_i + i
        order = np.argsort(pk, kind="stable")
        ks = pk[order]
        first = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]]) if len(ks) else np.zeros(0, dtype=np.int64)
        wmax = np.maximum.reduceat(w[order], first) if len(ks) else np.zeros(0)
        X = sp.csr_matrix((wmax, (ks[first] // n_i, ks[first] % n_i)), shape=shape)
        del order, ks, first, wmax
        cpk = np.unique(pk[ev["event"].isin(CONSUMED).to_numpy(dtype=bool)])
        consumed = sp.csr_matrix((np.ones(len(cpk)), (cpk // n_i, cpk % n_i)), shape=shape)
        del pk, cpk
        buys = pd.DataFrame({"u": u[is_buy], "i": i[is_buy], "t": t[is_buy]})
        nb = buys.groupby(["u", "i"])["t"].agg(["size", "max", "min"])
        ix = (nb.index.get_level_values(0), nb.index.get_level_values(1))
        n_buy = sp.csr_matrix((nb["size"].to_numpy(dtype=float), ix), shape=shape)
        last_buy = sp.csr_matrix((nb["max"].to_numpy() + 1.0, ix), shape=shape)
        first_buy = sp.csr_matrix((nb["min"].to_numpy() + 1.0, ix), shape=shape)
        fitted_tifu = bk = None
        if len(buys):
            key = ev["order_id"].to_numpy()[is_buy] if "order_id" in ev.columns else None
            if key is not None and pd.isna(key).any():
                day = (buys["t"] // DAY).astype(np.int64).astype(str).to_numpy()
                key = np.where(pd.isna(key), "day-" + day, key.astype(str))
            bk = Baskets.from_purchases(buys["u"].to_numpy(), buys["i"].to_numpy(), buys["t"].to_numpy(), key,
                                        len(user_ids), len(item_ids))
            fitted_tifu = replace(tifu or TIFU()).fit(bk)  # a fresh copy: the settings, not the fitted state

        cat_names = np.array(["unknown"])
        item_cat = np.zeros(len(item_ids), dtype=int)
        stock = np.full(len(item_ids), np.inf)
        titles = price = side = None
        if items is not None and len(items):
            it = items.set_index("item_id").reindex(item_ids)
            cats = it["category"].fillna("unknown").astype(str)
            cat_names, item_cat = np.unique(cats.to_numpy(), return_inverse=True)
            if "stock" in it.columns:
                stock = it["stock"].astype(float).fillna(np.inf).to_numpy()
            if "price" in it.columns:
                price = it["price"].astype(float).to_numpy()
            if "title" in it.columns:
                titles = it["title"].fillna("").astype(str).to_numpy()
            side = side_nodes(it)
        rep = RepeatModel().fit(buys[["u", "i", "t"]], len(item_ids), item_cat)

        pop = context_popularity(ev, i, t, w, len(item_ids), users)
        no_consent = set()
        if users is not None and "consent_personalization" in users.columns:
            no_consent = set(users.loc[users["consent_personalization"].fillna(True).eq(False), "user_id"])
        t_end = float(t.max()) if len(t) else 0.0
        del ev, buys, nb, u, i, t, w, ts, secs, is_buy  # 50M-row columns: freed before the graph
        graph = GraphFilterCF(params or FilterParams()).fit(X, side)
        stage = stage or StageParams()
        ease = fit_ease(X, stage.ease_lam) if stage.ease_w > 0 else None
        return cls(user_ids=user_ids.to_numpy(), item_ids=item_ids.to_numpy(), X=X, consumed=consumed, n_buy=n_buy,
                   last_buy=last_buy, first_buy=first_buy, t0=t0, t_end=t_end,
                   graph=graph, repeat=rep, tifu=fitted_tifu, baskets=bk,
                   item_cat=item_cat, categories=cat_names, stock=stock, pop=pop, stage=stage,
                   titles=titles, price=price, no_consent=no_consent, side=side, ease=ease)

    # --- user state ----------------------------------------------------------------------------------
    def batch_state(self, u: np.ndarray, cols: np.ndarray | None = None, tifu: bool = True) -> UserRows:
        """State of known users (row indices), over the item columns `cols` (sorted) when given, else all items.
        `tifu` False: the TIFU scores left at 0 (they cost the neighbours' rows; retrieval's query does not use them)."""
        u = np.asarray(u)
        n = len(self.item_ids) if cols is None else len(cols)
        tifu = self.tifu.scores(u, cols) if self.tifu is not None and tifu else np.zeros((len(u), n))
        return UserRows(dense_rows(self.X, u, cols), dense_rows(self.consumed, u, cols) > 0,
                        dense_rows(self.n_buy, u, cols), dense_rows(self.last_buy, u, cols) - 1.0,
                        dense_rows(self.first_buy, u, cols) - 1.0, tifu)

    def user_state(self, user_id: str, recent: pd.DataFrame | None = None, cols: np.ndarray | None = None,
                   tifu: bool = True) -> tuple[UserRows, bool]:
        """(state of one user as a batch of one, known?), over the item columns `cols` (sorted; they must hold the
        user's history and `recent` items) when given, else all items.

        `recent`: fresh events (item_id, event, optional timestamp) not seen at training; merged in (inductive).
        They move the edge weights, counts and recency; the TIFU basket score stays the trained one."""
        n = len(self.item_ids) if cols is None else len(cols)
        uidx = self.user_index.get(user_id)
        if uidx is not None:
            st = self.batch_state(np.array([uidx]), cols, tifu)
        else:
            st = UserRows(np.zeros((1, n)), np.zeros((1, n), bool), np.zeros((1, n)), np.full((1, n), -1.0),
                          np.full((1, n), -1.0), np.zeros((1, n)))
        if recent is not None and len(recent):
            ts_all = recent["timestamp"] if "timestamp" in recent.columns else [None] * len(recent)
            evs = recent["event"] if "event" in recent.columns else ["view"] * len(recent)
            for item, ev, ts in zip(recent["item_id"], evs, ts_all):
                j = self.item_index.get(str(item))
                ev = str(ev).lower()
                if j is None or ev not in EVENT_WEIGHTS:
                    continue
                if cols is not None:
                    j = int(np.searchsorted(cols, j))
                st.rows[0, j] = max(st.rows[0, j], EVENT_WEIGHTS[ev])
                if ev in CONSUMED:
                    st.cons[0, j] = True
                if ev == "purchase":
                    st.nb[0, j] += 1
                    t = (pd.Timestamp(ts).timestamp() - self.t0) if ts is not None and pd.notna(ts) else self.t_end
                    st.lb[0, j] = max(st.lb[0, j], t)
                    st.fb[0, j] = t if st.fb[0, j] < 0 else min(st.fb[0, j], t)
        return st, uidx is not None or bool(st.rows.any())

    # --- scoring -------------------------------------------------------------------------------------
    def stage1(self, st: UserRows, now: float | np.ndarray | None = None, model: bool = False,
               cols: np.ndarray | None = None):
        """Stage-1 scores (b x items): discovery from the graph filter, due re-buys from the learned item cycles,
        plus the TIFU basket score (weight `tifu_w`); or the plain buy-again list when validation chose it.
        `cols` (sorted item indices, `st` over them): the same scores on those items only, through `retrieval`
        (which needs every item of the users' state among them: the TIFU scaling takes its maximum over `cols`).

        Returns (score, graph_z, repeat_score, allowed): consumed buy-once items are not allowed. `model`: the
        model's own score even when buy-again serves (the second stage's features)."""
        now = self.t_end if now is None else now
        at = slice(None) if cols is None else cols
        if cols is not None:
            # retrieval serves trained catalogues above DENSE_MAX_ITEMS, where no EASE is fitted (EASE_MAX_ITEMS)
            z = self.retrieval.graph_z(self, st.rows, cols)
        else:
            z = blend_ease(zscore(self.graph.score(sp.csr_matrix(st.rows))), self.ease_z(st.rows), self.stage.ease_w,
                           st.nb > 0)
            cold = self.graph.d_item < 1e-6
            if cold.any() and (~cold).any():
                # new item: content-based score = mean score of the warm items of its category (its embedding is the
                # category mean, and every score term is linear in the item's embedding), less a novelty penalty
                n_cat = len(self.categories)
                warm_cat = self.item_cat[~cold]
                cnt = np.bincount(warm_cat, minlength=n_cat)
                onehot = sp.csr_matrix((np.ones(len(warm_cat)), (np.arange(len(warm_cat)), warm_cat)),
                                       shape=(len(warm_cat), n_cat))
                sums = np.asarray((onehot.T @ z[:, ~cold].T).T)  # per row: sum of warm scores by category
                cat_mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), z.mean(1, keepdims=True))
                z[:, cold] = cat_mean[:, self.item_cat[cold]] - COLD_PENALTY
        rep = np.zeros_like(z)
        bought = st.nb > 0
        if self.repeat.has_repeats and bought.any():
            r_idx, c_idx = np.nonzero(bought)
            now_r = np.broadcast_to(np.asarray(now, dtype=float).reshape(-1), (st.rows.shape[0],))[r_idx]
            items = c_idx if cols is None else cols[c_idx]
            rep[r_idx, c_idx] = self.repeat.score(items, st.nb[r_idx, c_idx], st.lb[r_idx, c_idx], now_r)
        allowed = ~(st.cons & (self.repeat.item_share[at][None, :] <= 0))
        if self.stage.serve == "buy_again" and not model:
            pop = self.pop["global"]
            return buy_again_scores(st.nb, pop[at], float(pop.max())), z, rep, allowed
        return combine(z, rep, st.tifu, self.stage, self.pop_z()[at]), z, rep, allowed

    def ease_z(self, rows: np.ndarray) -> np.ndarray | None:
        """z-scored EASE scores of the users' item signals (None without EASE)."""
        if self.ease is None:
            return None
        n = self.ease.shape[0]  # items posted after training (extend.with_items) sit past it with no EASE weights
        e = (rows[:, :n] > 0).astype(np.float32) @ self.ease
        return zscore(np.pad(e, ((0, 0), (0, rows.shape[1] - n))))

    def pop_z(self, half_life: float | None = None) -> np.ndarray:
        """z-scored log of recent popularity over the catalogue, half-life `half_life` days (default: the stage's);
        kept per popularity array (a request at 200k items spent ~2 ms recomputing it)."""
        hl = self.stage.pop_hl if half_life is None else half_life
        pop = self.pop.get(f"recent:{hl:g}", self.pop["global"])
        cache = self.__dict__.setdefault("_pop_z", {})
        if hl not in cache or cache[hl][0] is not pop:
            lp = np.log1p(pop)
            cache[hl] = (pop, (lp - lp.mean()) / max(float(lp.std()), 1e-12))
        return cache[hl][1]

    def embeddings(self) -> np.ndarray:
        if self._emb is None:
            self._emb = self.graph.item_embeddings()
        return self._emb

    def similar(self, j: int, n: int = 10, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Item -> item by two-hop graph propagation (normalised co-occurrence), embedding cosine as tie-break."""
        sig = np.zeros((len(self.item_ids), 1))
        sig[j] = 1.0
        co = self.graph.propagate(sig, 2).ravel()
        emb = self.embeddings()
        sim = co / max(co.max(), 1e-12) + 0.1 * (emb @ emb[j])
        if not np.any(co > 0):  # an item with no interactions: same category first, then embedding
            sim = (self.item_cat == self.item_cat[j]).astype(float) + 0.1 * (emb @ emb[j])
        sim[j] = -np.inf
        if candidates is not None:
            mask = np.full(len(sim), False)
            mask[candidates] = True
            sim[~mask] = -np.inf
        top = np.argsort(-sim, kind="stable")[:n]
        top = top[np.isfinite(sim[top])]
        return top, sim[top]

    def popularity(self, channel: str | None = None, store_id: str | None = None,
                   segment: dict[str, str] | None = None) -> tuple[np.ndarray, str]:
        """Context popularity and its label: the customer's segment (users.csv attributes given with the request)
        when the model has it, else the store, else the channel, else overall."""
        keys = [(f"segment:{c}={v}", SEGMENTS[c].format(v)) for c, v in (segment or {}).items() if c in SEGMENTS and v]
        keys = [(k, label) for k, label in keys if k in self.pop and self.pop[k].sum() > 0]
        if keys:  # several attributes: mean of their normalised popularities
            pop = sum(self.pop[k] / self.pop[k].sum() for k, _ in keys) / len(keys)
            return pop + 1e-3 * self.pop["global"] / self.pop["global"].sum(), " and ".join(label for _, label in keys)
        for key, label in ((f"store:{store_id}", f"in store {store_id}"), (f"channel:{channel}", f"on {channel}")):
            if (store_id if key.startswith("store") else channel) and key in self.pop and self.pop[key].sum() > 0:
                return self.pop[key] + 1e-3 * self.pop["global"], label
        return self.pop["global"], "overall"

    def item_label(self, j: int) -> str:
        if self.titles is not None and self.titles[j]:
            return f"{self.titles[j]} ({self.item_ids[j]})"
        return str(self.item_ids[j])

    # --- persistence ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        arrays = {"user_ids": self.user_ids.astype(str), "item_ids": self.item_ids.astype(str),
                  "item_cat": self.item_cat, "categories": self.categories.astype(str), "stock": self.stock,
                  "titles": self.titles.astype(str) if self.titles is not None else np.array([], dtype=str),
                  "price": self.price if self.price is not None else np.array([])}
        for name in ("X", "consumed", "n_buy", "last_buy", "first_buy"):
            m = getattr(self, name).tocsr()
            arrays.update({f"{name}_data": m.data, f"{name}_indices": m.indices, f"{name}_indptr": m.indptr})
        for k, v in self.pop.items():
            if not k.startswith("recent:") or k == f"recent:{self.stage.pop_hl:g}":  # the chosen half-life only
                arrays[f"pop|{k}"] = v
        arrays.update({f"graph_{k}": v for k, v in self.graph.state().items()})
        arrays.update(self.repeat.state())
        if self.tifu is not None:
            V = self.tifu.V.tocsr()
            arrays.update({"tifu_data": V.data, "tifu_indices": V.indices, "tifu_indptr": V.indptr,
                           "tifu_nbrs": self.tifu.nbrs})
        if self.ease is not None:
            arrays["ease"] = self.ease
        np.savez_compressed(folder / "recommender.npz", **arrays)
        meta = {"t0": self.t0, "t_end": self.t_end, "graph_params": self.graph.params.as_dict(),
                "stage": self.stage.__dict__, "no_consent": sorted(self.no_consent),
                "tifu": self.tifu.settings() if self.tifu is not None else None}
        (folder / "recommender.json").write_text(json.dumps(meta, indent=1))
        if self.ranker is not None:
            self.ranker.save(folder)
        from omnidecide.models.recommender.retrieval import Retrieval
        if Retrieval.wanted(self):  # built once at training, so every worker and replica searches the same graph
            (self.retrieval or Retrieval.build(self)).save(folder)

    @classmethod
    def load(cls, folder: Path, arrays: Mapping[str, np.ndarray] | None = None) -> "Recommender":
        """`arrays`: the version's arrays already read (models/recommender/shared.py: one copy in shared memory for
        every worker of a batch job) instead of recommender.npz."""
        folder = Path(folder)
        meta = json.loads((folder / "recommender.json").read_text())
        z = np.load(folder / "recommender.npz", allow_pickle=False) if arrays is None else arrays
        shape = (len(z["user_ids"]), len(z["item_ids"]))
        mats = {n: sp.csr_matrix((z[f"{n}_data"], z[f"{n}_indices"], z[f"{n}_indptr"]), shape=shape)
                for n in ("X", "consumed", "n_buy", "last_buy", "first_buy")}
        graph = GraphFilterCF.from_state(meta["graph_params"], {k[6:]: z[k] for k in z.keys() if k.startswith("graph_")})
        made = {k[len(SHARED):]: z[k] for k in z.keys() if k.startswith(SHARED)}  # see shared.put_arrays
        tifu = TIFU.stored(meta["tifu"], z, shape, made) if meta.get("tifu") is not None else None
        pop = {k.split("|", 1)[1]: z[k] for k in z.keys() if k.startswith("pop|")}
        titles = z["titles"] if len(z["titles"]) else None
        rec = cls(user_ids=z["user_ids"], item_ids=z["item_ids"], t0=meta["t0"], t_end=meta["t_end"], graph=graph, tifu=tifu,
                  repeat=RepeatModel.from_state({k: z[k] for k in ("rep_share", "rep_cycle", "rep_global")}),
                  item_cat=z["item_cat"], categories=z["categories"], stock=z["stock"], pop=pop,
                  stage=StageParams(**meta["stage"]), titles=titles,
                  price=z["price"] if len(z["price"]) else None, no_consent=set(meta["no_consent"]),
                  ease=z["ease"] if "ease" in z else None, **mats)
        from omnidecide.models.recommender.ranker import SecondStage
        rec.ranker = SecondStage.load(folder)
        from omnidecide.models.recommender.retrieval import Retrieval
        rec.retrieval = Retrieval.load(folder, rec, made) if Retrieval.wanted(rec) else None
        return rec
