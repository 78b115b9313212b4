"""Graph-filter collaborative filtering (GF-CF family, Shen et al. 2021): closed form, no gradient training.

What the model is:
- the bipartite user-item graph with edge weights from event types, plus side-information nodes: one node per item
  category / genre, joined to its items by edges of weight `side_w` (they sit on the user side of the bipartite graph,
  so two hops item->category->item link items of the same genre even when few users link them). Normalised as
  R~ = D_u^-a X D_i^-b (a = b = 1/2 is the LightGCN / GF-CF normalisation);
- a user's scores are a spectral filter of their item signal r on the item graph R~^T R~ (two hops
  item->user->item): s = ((r d^-c) Q h(L) Q^T) d^c with h(l) = l^p / (l^p + mu^p), a smooth ideal low-pass.
  Q, L come from a dense eigendecomposition for small catalogues, else from randomized subspace iteration on the sparse operator (spectral.py);
- item embeddings (similar items, MMR diversity, substitutes) are the top-k singular vectors of R~;
- PyTorch Geometric `LGConv` does the sparse two-hop propagation used for similar items.

A learned LightGCN blend used to sit here behind a flag; it never reached the scores, so it was deleted (issue 13).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch_geometric.nn import LGConv


DENSE_MAX_ITEMS = 4000  # up to this many items the item graph is decomposed densely (every eigenpair)
# Above it, the randomized solve's cost is the orthonormalisation of items x 2k columns, several times: k is capped so
# that block holds at most EIG_CELLS values (k = 512 up to ~100k items, 256 at 200k; a 200k x 1,024 block took ~4x the
# CPU of 200k x 512). bench/scale.py ("exact") measured the loss: top-20 overlap with the exact filter 0.992 at k=256.
EIG_CELLS = 200_000 * 512
# a component whose filter response h is below this adds nothing a ranking can see: scoring and the item vectors
# leave its column out
MIN_RESPONSE = 1e-4


@dataclass
class FilterParams:
    mu: float = 0.07       # cut-off eigenvalue (relative to the largest)
    p: float = 4.0         # sharpness of the cut-off
    c: float = 0.35        # degree re-weighting (input d^-c, output d^c)
    max_eig: int = 512     # eigenpairs kept when the catalogue is too big for a dense eigendecomposition
    k: int = 32            # singular vectors kept for the item embeddings
    beta: float = 0.5      # item-side normalisation exponent of the adjacency (0.5 = symmetric, LightGCN)
    user_exp: float = 0.5  # user-side normalisation exponent
    side_w: float = 3.0    # edge weight item -> its category/genre node, in purchase units (1.0); 0 = no side nodes
    seed: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def kept(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the eigenpairs whose response h = lam^p / (lam^p + mu^p) is not ~0, their responses): the one
        rule for scoring, the retrieval's item vectors and tuning."""
        h = lam ** self.p / (lam ** self.p + self.mu ** self.p)
        keep = np.flatnonzero(h > MIN_RESPONSE)
        return keep, h[keep]


@dataclass
class GraphFilterCF:
    """Fit on X (users x items, weights >= 0); score any item signal (rows over items)."""

    params: FilterParams = field(default_factory=FilterParams)
    n_items: int = 0
    d_item: np.ndarray | None = None       # item degrees from interactions only (0: a cold item)
    d_graph: np.ndarray | None = None      # item degrees in the graph (interactions + side-information edges)
    R_norm: sp.csr_matrix | None = None    # D_u^-a X D_i^-b  (users then side nodes x items)
    V: np.ndarray | None = None            # k x items, right singular vectors of R_norm
    sing: np.ndarray | None = None
    Q: np.ndarray | None = None            # items x m eigenvectors of the item graph
    lam: np.ndarray | None = None          # their eigenvalues, scaled to a maximum of 1
    # the kept components with the degree scalings folded in, for the (Q, mu, p, c) they were computed for: fixed
    # between fits, and selecting them copies an items x components matrix that at 10,000 items costs more than a
    # request's scoring itself
    _bases: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def fit(self, X: sp.csr_matrix, side: sp.csr_matrix | None = None) -> "GraphFilterCF":
        """X: users x items edge weights; side: side-information nodes x items (1 where the item has that category or
        genre), appended as extra nodes on the user side with edge weight `side_w`."""
        p = self.params
        X = sp.csr_matrix(X, dtype=np.float64)
        self.n_items = X.shape[1]
        self.d_item = np.maximum(np.asarray(X.sum(0)).ravel(), 1e-9)
        if side is not None and side.shape[0] and p.side_w > 0:
            X = sp.vstack([X, p.side_w * sp.csr_matrix(side, dtype=np.float64)]).tocsr()
        du = np.maximum(np.asarray(X.sum(1)).ravel(), 1e-9)
        self.d_graph = np.maximum(np.asarray(X.sum(0)).ravel(), 1e-9)
        self.R_norm = (sp.diags(du ** -p.user_exp) @ X @ sp.diags(self.d_graph ** -p.beta)).tocsr()
        k = int(min(p.k, min(X.shape) - 2))
        if k >= 1:
            v0 = np.random.default_rng(p.seed).standard_normal(min(X.shape))
            _, s, vt = svds(self.R_norm, k=k, v0=v0)
            order = np.argsort(-s)
            self.V, self.sing = vt[order], s[order]
            # fix the sign of each vector so results do not depend on the solver's choice
            self.V *= np.sign(self.V[np.arange(len(order)), np.abs(self.V).argmax(1)])[:, None]
        else:
            self.V, self.sing = np.zeros((0, self.n_items)), np.zeros(0)
        self._adj = None  # built on the first `propagate` (see _graph)
        self._eigen()
        return self

    def _eigen(self) -> None:
        """Eigenpairs of the item graph R~^T R~ (two hops of the normalised adjacency): dense when the catalogue is
        small, else the top `max_eig` by randomized subspace iteration on the sparse operator (spectral.py)."""
        n = self.n_items
        if n <= DENSE_MAX_ITEMS:
            lam, Q = np.linalg.eigh((self.R_norm.T @ self.R_norm).toarray())
        else:  # randomized subspace iteration through R~ (models/recommender/spectral.py): sparse products only
            from omnidecide.models.recommender.spectral import item_graph_eigen
            k = min(self.params.max_eig, n - 2, max(64, EIG_CELLS // (2 * n)))
            lam, Q = item_graph_eigen(self.R_norm, k, seed=self.params.seed)
        lam = np.clip(lam, 0.0, None)
        self.lam = lam / max(float(lam.max()), 1e-12)  # the cut-off mu is relative to the largest eigenvalue
        Q *= np.sign(Q[np.abs(Q).argmax(0), np.arange(Q.shape[1])])[None, :]  # deterministic signs (in place: at
        self.Q = Q                                                               # 200k items a copy is 0.4 GB)

    def score(self, rows: sp.csr_matrix) -> np.ndarray:
        """Scores (b x items) for item signals `rows` (b x items, the user's weighted history)."""
        q_in, h, q_out = self._filter_bases()
        return (np.asarray(sp.csr_matrix(rows, dtype=np.float64) @ q_in) * h[None, :]) @ q_out

    def _filter_bases(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(D^-c Q_k, h_k, Q_k^T D^c) over the components whose response h is not ~0 (they cost time, add nothing)."""
        p = self.params
        key = (id(self.Q), id(self.d_graph), p.p, p.mu, p.c)
        if self._bases is None or self._bases[0] != key:
            d = self.d_graph
            keep, h = p.kept(self.lam)
            qk = np.ascontiguousarray(self.Q[:, keep])
            self._bases = (key, qk * (d ** -p.c)[:, None], h, qk.T * (d ** p.c)[None, :])
        return self._bases[1:]

    def _graph(self) -> None:
        """The normalised bipartite adjacency as a torch CSR tensor, item nodes first then user/side nodes. Built when
        first needed (similar items), not at fit: at 1M customers it holds ~0.9 GB and building it took ~3 GB more
        for a moment, on top of the model being built (the peak of the served build was 12.14 GB against 12)."""
        R = self.R_norm.tocoo()
        n_i = self.n_items
        src = np.concatenate([R.col, R.row + n_i])
        dst = np.concatenate([R.row + n_i, R.col])
        self._n_nodes = n_i + self.R_norm.shape[0]
        # the normalised adjacency is symmetric, so it is its own transpose (PyG's adj_t)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self._adj = torch.sparse_csr_tensor(*_csr(sp.csr_matrix(
                (np.concatenate([R.data, R.data]), (dst, src)), shape=(self._n_nodes, self._n_nodes))))
        self._conv = LGConv(normalize=False)

    def propagate(self, item_signal: np.ndarray, hops: int) -> np.ndarray:
        """Apply `hops` LGConv layers to item-node features (items x b); returns the item-node part."""
        if getattr(self, "_adj", None) is None:
            self._graph()
        b = item_signal.shape[1]
        x = torch.zeros(self._n_nodes, b, dtype=torch.float32)
        x[: self.n_items] = torch.as_tensor(item_signal, dtype=torch.float32)
        with torch.no_grad():
            for _ in range(hops):
                x = self._conv(x, self._adj)
        return x[: self.n_items].numpy().astype(np.float64)

    def item_embeddings(self) -> np.ndarray:
        """Items x k: spectral embedding (singular vectors weighted by singular values), L2-normalised."""
        if not len(self.V):
            return np.zeros((self.n_items, 1))
        E = (self.V * self.sing[:, None]).T
        return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        R = self.R_norm.tocsr()
        return {"d_item": self.d_item, "d_graph": self.d_graph, "V": self.V, "sing": self.sing, "R_data": R.data,
                "R_indices": R.indices, "R_indptr": R.indptr, "R_shape": np.array(R.shape), "Q": self.Q,
                "lam": self.lam}

    @classmethod
    def from_state(cls, params: dict, st: dict[str, np.ndarray]) -> "GraphFilterCF":
        m = cls(params=FilterParams(**params))
        m.d_item, m.d_graph, m.V, m.sing = st["d_item"], st["d_graph"], st["V"], st["sing"]
        m.n_items = len(m.d_item)
        m.R_norm = sp.csr_matrix((st["R_data"], st["R_indices"], st["R_indptr"]), shape=tuple(st["R_shape"]))
        m.Q, m.lam = st["Q"], st["lam"]
        m._adj = None
        return m


def _csr(m: sp.csr_matrix) -> tuple:
    m.sort_indices()
    return (torch.tensor(m.indptr, dtype=torch.int64), torch.tensor(m.indices, dtype=torch.int64),
            torch.tensor(m.data, dtype=torch.float32), m.shape)
