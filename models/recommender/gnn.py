"""The graph model: filters over the weighted user-item graph, with sparse propagation by PyTorch Geometric `LGConv`.

What the model is:
- the bipartite user-item graph with edge weights from event types, plus side-information nodes: one node per item
  category / genre, joined to its items by edges of weight `side_w` (they sit on the user side of the bipartite graph,
  so two hops item->category->item link items of the same genre even when few users link them). Normalised as
  R~ = D_u^-a X D_i^-b (a = b = 1/2 is the LightGCN / GF-CF normalisation);
- default ("rational") mode: a user's scores are a spectral filter of their item signal r on the item graph
  R~^T R~ (two hops item->user->item): s = ((r d^-c) Q h(L) Q^T) d^c with h(l) = l^p / (l^p + mu^p), a smooth ideal
  low-pass (GF-CF, Shen et al. 2021). Q, L come from a dense eigendecomposition for small catalogues, else from
  randomized subspace iteration on the sparse operator (spectral.py), so the cost grows with the edges;
- "poly" mode (fallback): two LGConv hops minus a weighted four-hop term plus an ideal low-pass term;
- optionally a learned LightGCN embedding (same propagation, sampled-softmax loss with temperature) blended in
  (off by default: it did not pay for its training time on ML-100K, see docs/BENCHMARKS.md).
Scoring needs only the user's item signal, never a user node. Users unseen at training time are therefore scored
from their fresh events (inductive). An item's spectral embedding doubles as its embedding for similar items,
substitutes and cold items.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch_geometric.nn import LGConv


@dataclass
class GNNParams:
    mode: str = "rational"  # "rational": spectral filter h(l) = l^p / (l^p + mu^p) on the item graph; "poly": hops only
    mu: float = 0.07       # rational filter: cut-off eigenvalue
    p: float = 4.0         # rational filter: sharpness
    c: float = 0.35        # rational filter: degree re-weighting (input d^-c, output d^c)
    max_eig: int = 512     # eigenpairs kept when the catalogue is too big for a dense eigendecomposition
    k: int = 32            # spectral (ideal low-pass) dimensions
    alpha: float = 0.1     # weight of the ideal low-pass term
    c2: float = 0.5        # weight of the 4-hop sharpening term (subtracted)
    beta: float = 0.5      # item-side normalisation exponent of the adjacency (0.5 = symmetric, LightGCN)
    user_exp: float = 0.5  # user-side normalisation exponent
    side_w: float = 3.0    # edge weight item -> its category/genre node, in purchase units (1.0); 0 = no side nodes
    learned_dim: int = 0   # >0: also train LightGCN embeddings of this size (blended with weight `learned_w`)
    learned_w: float = 0.0
    learned_epochs: int = 20
    tau: float = 0.1
    layers: int = 2
    lr: float = 0.01
    l2: float = 1e-4
    seed: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class GraphFilterGNN:
    """Fit on X (users x items, weights >= 0); score any item signal (rows over items)."""

    params: GNNParams = field(default_factory=GNNParams)
    n_items: int = 0
    d_item: np.ndarray | None = None       # item degrees from interactions only (0: a cold item)
    d_graph: np.ndarray | None = None      # item degrees in the graph (interactions + side-information edges)
    R_norm: sp.csr_matrix | None = None    # D_u^-a X D_i^-b  (users then side nodes x items)
    V: np.ndarray | None = None            # k x items, right singular vectors of R_norm
    sing: np.ndarray | None = None
    scales: dict = field(default_factory=dict)
    Q: np.ndarray | None = None            # items x m eigenvectors of the item graph (rational mode)
    lam: np.ndarray | None = None          # their eigenvalues
    learned_items: np.ndarray | None = None  # items x d (normalised) from the learned LightGCN, if trained
    learned_users: np.ndarray | None = None

    # --- fit -----------------------------------------------------------------------------------------
    def fit(self, X: sp.csr_matrix, side: sp.csr_matrix | None = None) -> "GraphFilterGNN":
        """X: users x items edge weights; side: side-information nodes x items (1 where the item has that category or
        genre), appended as extra nodes on the user side with edge weight `side_w`."""
        p = self.params
        X = X_obs = sp.csr_matrix(X, dtype=np.float64)
        self.n_items = X.shape[1]
        self.d_item = np.maximum(np.asarray(X.sum(0)).ravel(), 1e-9)
        if side is not None and side.shape[0] and p.side_w > 0:
            X = sp.vstack([X, p.side_w * sp.csr_matrix(side, dtype=np.float64)]).tocsr()
        du = np.maximum(np.asarray(X.sum(1)).ravel(), 1e-9)
        self.d_graph = np.maximum(np.asarray(X.sum(0)).ravel(), 1e-9)
        self.R_norm = (sp.diags(du ** -p.user_exp) @ X @ sp.diags(self.d_graph ** -p.beta)).tocsr()
        k = int(min(p.k, min(X.shape) - 2))
        if k >= 1:
            rng = np.random.default_rng(p.seed)
            v0 = rng.standard_normal(min(X.shape))
            _, s, vt = svds(self.R_norm, k=k, v0=v0)
            order = np.argsort(-s)
            self.V, self.sing = vt[order], s[order]
            # fix the sign of each vector so results do not depend on the solver's choice
            self.V *= np.sign(self.V[np.arange(len(order)), np.abs(self.V).argmax(1)])[:, None]
        else:
            self.V, self.sing = np.zeros((0, self.n_items)), np.zeros(0)
        self._graph()
        if p.mode == "rational":
            self._eigen()
        self._sample = X_obs[: min(X_obs.shape[0], 2000)]
        self._rescale()
        if p.learned_dim > 0 and p.learned_w > 0:
            self._train_learned(X_obs)
        return self

    def _eigen(self) -> None:
        """Eigenpairs of the item graph R~^T R~ (two hops of the normalised adjacency): dense when the catalogue is
        small, else the top `max_eig` by randomized subspace iteration on the sparse operator (cost grows with the edges)."""
        n = self.n_items
        if n <= 4000:
            P = (self.R_norm.T @ self.R_norm).toarray()
            lam, Q = np.linalg.eigh(P)
        else:  # randomized subspace iteration through R~ (models/recommender/spectral.py): sparse products only
            from omnidecide.models.recommender.spectral import item_graph_eigen
            lam, Q = item_graph_eigen(self.R_norm, min(self.params.max_eig, n - 2), seed=self.params.seed)
        lam = np.clip(lam, 0.0, None)
        self.lam = lam / max(float(lam.max()), 1e-12)  # the cut-off mu is relative to the largest eigenvalue
        self.Q = Q * np.sign(Q[np.abs(Q).argmax(0), np.arange(Q.shape[1])])[None, :]  # deterministic signs

    def _rational(self, rows: sp.csr_matrix) -> np.ndarray:
        p = self.params
        d = self.d_graph
        h = self.lam ** p.p / (self.lam ** p.p + p.mu ** p.p)
        keep = h > 1e-4  # components with ~0 response cost time and add nothing
        A = np.asarray(rows @ sp.diags(d ** -p.c) @ self.Q[:, keep])
        return (A * h[keep][None, :]) @ self.Q[:, keep].T * (d ** p.c)[None, :]

    def _rescale(self) -> None:
        """Scale of each term, so the mixing weights mean the same thing on every data set."""
        if self.params.mode == "rational":
            self.scales = {}
            return
        lin, four, ideal = self._terms(self._sample)
        self.scales = {name: float(np.abs(t).mean()) or 1.0 for name, t in (("lin", lin), ("four", four), ("ideal", ideal))}

    def truncate(self, k: int) -> "GraphFilterGNN":
        """A copy keeping the top-k spectral dimensions (for tuning k without refitting)."""
        from copy import copy
        m = copy(self)
        m.params = GNNParams(**{**self.params.as_dict(), "k": k})
        m.V, m.sing = self.V[:k], self.sing[:k]
        m._rescale()
        return m

    def _graph(self) -> None:
        """edge_index / edge_weight of the normalised bipartite graph, item nodes first then user nodes."""
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
        # the two-hop item->user->item operator R~^T R~, cached when small (same numbers as two LGConv hops)
        est = float(np.sum(np.diff(self.R_norm.indptr).astype(float) ** 2))
        self._P = (self.R_norm.T @ self.R_norm).tocsr() if est <= 5e7 else None
        self._edge_index = torch.tensor(np.vstack([src, dst]), dtype=torch.long)
        self._edge_weight = torch.tensor(np.concatenate([R.data, R.data]), dtype=torch.float32)
        self._conv = LGConv(normalize=False)

    def propagate(self, item_signal: np.ndarray, hops: int) -> np.ndarray:
        """Apply `hops` LGConv layers to item-node features (items x b); returns the item-node part."""
        b = item_signal.shape[1]
        x = torch.zeros(self._n_nodes, b, dtype=torch.float32)
        x[: self.n_items] = torch.as_tensor(item_signal, dtype=torch.float32)
        with torch.no_grad():
            for _ in range(hops):
                x = self._conv(x, self._adj)
        return x[: self.n_items].numpy().astype(np.float64)

    def _terms(self, rows: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = sp.csr_matrix(rows, dtype=np.float64)
        # two hops item->user->item give r R~^T R~ (the linear filter); four hops its square
        if self._P is not None:
            lin = np.asarray((rows @ self._P).todense())
            four = np.asarray(lin @ self._P.T) if self.params.c2 else np.zeros_like(lin)  # P is symmetric
        else:
            sig = rows.toarray().T  # items x b
            two = self.propagate(sig, 2)
            four = self.propagate(two, 2) if self.params.c2 else np.zeros_like(two)
            lin, four = two.T, four.T
        if len(self.V):
            d = self.d_graph
            ideal = np.asarray(rows @ sp.diags(d ** -0.5) @ self.V.T) @ (self.V * d[None, :] ** 0.5)
        else:
            ideal = np.zeros_like(lin)
        return lin, four, ideal

    def score(self, rows: sp.csr_matrix, learned_users: np.ndarray | None = None) -> np.ndarray:
        """Scores (b x items) for item signals `rows` (b x items, the user's weighted history)."""
        p = self.params
        if p.mode == "rational" and self.Q is not None:
            return self._rational(sp.csr_matrix(rows, dtype=np.float64))
        lin, four, ideal = self._terms(rows)
        s = lin / self.scales["lin"] - p.c2 * four / self.scales["four"] + p.alpha * ideal / self.scales["ideal"]
        if self.learned_items is not None and p.learned_w > 0:
            u = learned_users if learned_users is not None else self.infer_learned_user(rows)
            z = u @ self.learned_items.T
            s = _z(s) + p.learned_w * _z(z)
        return s

    # --- item embeddings -------------------------------------------------------------------------------
    def item_embeddings(self) -> np.ndarray:
        """Items x k: spectral embedding (singular vectors weighted by singular values), L2-normalised."""
        if not len(self.V):
            return np.zeros((self.n_items, 1))
        E = (self.V * self.sing[:, None]).T
        return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)

    # --- learned LightGCN part ------------------------------------------------------------------------
    def infer_learned_user(self, rows: sp.csr_matrix) -> np.ndarray:
        """Inductive user embedding: weighted mean of the learned item embeddings of the user's items."""
        rows = sp.csr_matrix(rows, dtype=np.float64)
        u = np.asarray(rows @ self.learned_items)
        return u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)

    def _train_learned(self, X: sp.csr_matrix) -> None:
        p = self.params
        torch.manual_seed(p.seed)
        g = torch.Generator().manual_seed(p.seed)
        n_u, n_i = X.shape
        E = torch.nn.Parameter(torch.randn(self._n_nodes, p.learned_dim, generator=g) * 0.1)
        opt = torch.optim.Adam([E], lr=p.lr)
        Xc = X.tocoo()
        pu = torch.tensor(Xc.row, dtype=torch.long) + n_i
        pi = torch.tensor(Xc.col, dtype=torch.long)
        bs = 4096
        R = self.R_norm.astype(np.float32)
        A = sp.bmat([[None, R.T], [R, None]]).tocsr()  # item nodes first, then users

        def prop() -> torch.Tensor:
            h, out = E, E
            for _ in range(p.layers):
                h = SparseProp.apply(h, A)
                out = out + h
            return out / (p.layers + 1)

        for _ in range(p.learned_epochs):
            perm = torch.randperm(len(pu), generator=g)
            for b in range(0, len(pu), bs):
                idx = perm[b: b + bs]
                H = prop()
                U = torch.nn.functional.normalize(H[pu[idx]], dim=1)
                It = torch.nn.functional.normalize(H[:n_i], dim=1)
                loss = torch.nn.functional.cross_entropy(U @ It.T / p.tau, pi[idx])
                loss = loss + p.l2 * (E[pu[idx]].pow(2).sum() + E[pi[idx]].pow(2).sum()) / len(idx)
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            H = prop()
            self.learned_items = torch.nn.functional.normalize(H[:n_i], dim=1).numpy().astype(np.float64)
            self.learned_users = torch.nn.functional.normalize(H[n_i: n_i + n_u], dim=1).numpy().astype(np.float64)

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        R = self.R_norm.tocsr()
        st = {"d_item": self.d_item, "d_graph": self.d_graph, "V": self.V, "sing": self.sing, "R_data": R.data,
              "R_indices": R.indices, "R_indptr": R.indptr, "R_shape": np.array(R.shape)}
        if self.Q is not None:
            st["Q"], st["lam"] = self.Q, self.lam
        if self.learned_items is not None:
            st["learned_items"] = self.learned_items
            st["learned_users"] = self.learned_users
        return st

    @classmethod
    def from_state(cls, params: dict, scales: dict, st: dict[str, np.ndarray]) -> "GraphFilterGNN":
        m = cls(params=GNNParams(**params))
        m.d_item, m.V, m.sing = st["d_item"], st["V"], st["sing"]
        m.n_items = len(m.d_item)
        m.d_graph = st.get("d_graph", m.d_item)  # versions saved before side-information nodes
        m.R_norm = sp.csr_matrix((st["R_data"], st["R_indices"], st["R_indptr"]), shape=tuple(st["R_shape"]))
        m.scales = scales
        if "Q" in st:
            m.Q, m.lam = st["Q"], st["lam"]
        m.learned_items = st.get("learned_items")
        m.learned_users = st.get("learned_users")
        m._graph()
        return m


class SparseProp(torch.autograd.Function):
    """y = A x for a fixed sparse symmetric A (scipy CSR), with its gradient A^T g = A g.

    Used for *training* propagation: torch's CPU sparse kernels are ~7x slower here than scipy's for the
    backward pass; inference goes through `LGConv`. Same normalised adjacency, same numbers."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, A: sp.csr_matrix) -> torch.Tensor:
        ctx.A = A
        return torch.from_numpy(np.asarray(A @ x.detach().numpy(), dtype=np.float32))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return torch.from_numpy(np.asarray(ctx.A @ g.numpy(), dtype=np.float32)), None


def _csr(m: sp.csr_matrix) -> tuple:
    m.sort_indices()
    return (torch.tensor(m.indptr, dtype=torch.int64), torch.tensor(m.indices, dtype=torch.int64),
            torch.tensor(m.data, dtype=torch.float32), m.shape)


def _z(s: np.ndarray) -> np.ndarray:
    return (s - s.mean(1, keepdims=True)) / np.maximum(s.std(1, keepdims=True), 1e-12)
