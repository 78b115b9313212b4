"""Rows of a sparse users x items matrix as dense arrays over chosen item columns, without scipy's fancy indexing
(whose per-call overhead, ~0.5 ms, was most of a request's time once only a few hundred candidates are scored)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def gather(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(row position in `rows`, column, value) of the stored entries of m[rows]; with `cols` (sorted item indices),
    only entries in those columns, the column given as its position in `cols`."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 1:  # one customer per request: a slice
        s, e = m.indptr[rows[0]], m.indptr[rows[0] + 1]
        r, c, v = np.zeros(e - s, dtype=np.int64), m.indices[s:e].astype(np.int64), m.data[s:e]
    else:
        at, lens = entries(m, rows)
        r, c, v = np.repeat(np.arange(len(rows)), lens), m.indices[at].astype(np.int64), m.data[at]
    if cols is not None:
        pos = np.minimum(np.searchsorted(cols, c), max(len(cols) - 1, 0))
        hit = cols[pos] == c if len(cols) else np.zeros(len(c), bool)
        r, c, v = r[hit], pos[hit], v[hit]
    return r, c, v


def entries(m: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in m.indices / m.data of the stored entries of m[rows], row by row; each row's entry count)."""
    start, lens = m.indptr[rows], m.indptr[rows + 1] - m.indptr[rows]
    ends = np.cumsum(lens)  # (np.r_ for the starts cost ~10 us)
    return np.repeat(start - ends + lens, lens) + np.arange(ends[-1] if len(ends) else 0), lens


def dense_rows(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """m[rows] as a dense array (len(rows) x items), over the columns `cols` (sorted) when given."""
    if len(rows) == 1 and m.has_canonical_format:  # one customer per request: written in place, half the numpy calls
        return dense_row(m, int(rows[0]), cols)
    return scatter(*gather(m, rows, cols), len(rows), m.shape[1] if cols is None else len(cols))


def dense_row(m: sp.csr_matrix, row: int, cols: np.ndarray | None = None) -> np.ndarray:
    """m[[row]] as a dense 1 x items array, over the columns `cols` (sorted) when given. `m` in canonical form (no
    duplicate entries: scipy's flag), so its values are assigned rather than summed."""
    s, e = m.indptr[row], m.indptr[row + 1]
    c, v = m.indices[s:e], m.data[s:e]
    out = np.zeros((1, m.shape[1] if cols is None else len(cols)))
    if cols is None:
        out[0, c] = v
    elif len(cols) and len(c):
        pos = np.searchsorted(cols, c)
        hit = cols.take(pos, mode="clip") == c
        out[0, pos[hit]] = v[hit]
    return out


def scatter(r: np.ndarray, c: np.ndarray, v: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Dense n_rows x n_cols array with v summed at (r, c)."""
    flat = np.bincount(r * n_cols + c, weights=v, minlength=n_rows * n_cols)
    return flat.reshape(n_rows, n_cols).astype(np.float64, copy=False)
