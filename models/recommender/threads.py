"""Threads for the few loops of the scale path whose work is C code that releases the GIL (scipy's sparse products,
numpy's partition and sort): their chunks run on as many threads as the process is given for BLAS
(`OMP_NUM_THREADS`, else the CPU count). Each chunk writes its own rows or columns, so results do not depend on the
thread count. At 1M customers the TIFU neighbour search and the eigen-solve's sparse products were minutes of one
core while the other stood idle."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor


def workers() -> int:
    """Threads this process may use: OMP_NUM_THREADS when set (bench/scale.py sets it per stage), else the CPUs."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return os.cpu_count() or 1


def each(fn: Callable[[object], None], chunks: Iterable) -> None:
    """fn(chunk) for every chunk, on up to `workers()` threads; an exception in any chunk is raised here."""
    chunks = list(chunks)
    n = min(workers(), len(chunks))
    if n <= 1:
        for c in chunks:
            fn(c)
        return
    with ThreadPoolExecutor(n) as ex:
        for _ in ex.map(fn, chunks):
            pass
