"""Values derived from arrays, kept on the object that asks for them while those arrays stay the same objects.

Why identity and not content: what a request needs per catalogue state (cold items, category sums, TIFU's items x
pool matrix, whether anything is re-bought) is derived from arrays that are never edited in place once a version is
built; a new catalogue state brings new arrays (`extend.with_items`, a live category change in serving/catalogue.py).
So `is` says "still valid" in a few hundred nanoseconds, where comparing content would read the arrays each time.

Each value is kept under its own attribute of the owner (`_memo <name>`), holding the arrays it was derived from
(so they cannot be freed and their ids reused while it is kept): a shallow copy of the owner (`copy.copy`, as
`extend` grows a version) starts with its original's values and replaces them on its own, never the original's.
"""
from __future__ import annotations

import operator
from typing import Callable, TypeVar

T = TypeVar("T")


def memo(owner: object, name: str, deps: tuple, compute: Callable[[], T]) -> T:
    """`compute()`, kept on `owner` under `name` while every object in `deps` is the same object (by identity)."""
    key = "_memo " + name
    hit = owner.__dict__.get(key)
    if hit is None or not all(map(operator.is_, hit[0], deps)):  # (a generator here cost ~1 us a call)
        hit = owner.__dict__[key] = (deps, compute())
    return hit[1]
