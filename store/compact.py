"""Compact frames of validated rows: strings as categoricals, and typed Parquet columns validated without text.

Why: at 50M events the text path (every cell cast to a string, stripped, re-parsed) costs minutes of CPU and the typed
frame of Python-sized strings ~10 GB. A job that reads a few columns of a big file (churn: user, time, event, amounts,
item, channel) needs neither: `load(..., columns=..., compact=True)` keeps ids, events and channels as categoricals
(a 4-byte code per row) and checks typed Parquet columns on their Arrow values. An Arrow dictionary column is checked
once per distinct value, not once per row.

The rules are the text path's (`models.schema.validate`), so the same rows are rejected: a batch whose rows break
any rule is re-validated as text on just those rows, which gives the rejects their reasons and raw text exactly as
before; a column whose Arrow type has no typed rule here (booleans, dates, time zones, keyed tables) sends its batch
through the text path. tests/test_parquet.py checks both paths keep and reject the same rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from omnidecide.models.schema import (EVENT_TYPES, ITEMLESS_EVENTS, MAX_NUMBER, MIN_TIMESTAMP, TableSpec, Validation,
                                     validate)

STRING_KINDS = ("id", "str", "event")


def release() -> None:
    """Hand freed memory back to the system: collect cycles, return pyarrow's unused pool pages and trim glibc's heap
    (`malloc_trim`). A compact load of 10M rows left ~0.45 GB of freed chunk buffers resident (~2 GB at 50M), held
    for the rest of the job otherwise; so does a phase of many mid-sized arrays (below glibc's mmap threshold)."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def compact(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """A typed frame (from `validate`) with its string columns as categoricals."""
    out = {}
    for c in frame.columns:
        out[c] = frame[c].astype("category") if spec.kind_of(c) in STRING_KINDS else frame[c]
    return pd.DataFrame(out, index=frame.index)


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Row-concatenate compact frames (emptying `frames`); categoricals are unioned (a plain concat would turn them
    into objects)."""
    if len(frames) == 1:
        return frames[0]
    out = {}
    for c in list(frames[0].columns):  # column by column, each batch's copy dropped once joined: peak +1 column
        parts = [f.pop(c) for f in frames]
        if isinstance(parts[0].dtype, pd.CategoricalDtype):
            out[c] = pd.api.types.union_categoricals([p.array for p in parts], ignore_order=True)
        else:
            out[c] = pd.concat(parts, ignore_index=True).array
        del parts
    frames.clear()
    return pd.DataFrame(out, copy=False)


def _strings(col, kind: str) -> tuple[np.ndarray, np.ndarray, pd.Categorical] | None:
    """(blank per row, unknown event per row, values as a categorical with blanks missing) of an Arrow string or
    dictionary-of-string column; the per-value work runs on the distinct values only."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        if not (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
            return None
        values, idx = col.dictionary, col.indices
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        enc = pc.dictionary_encode(col)
        values, idx = enc.dictionary, enc.indices
    else:
        return None
    # the same pandas string operations as the text path, once per distinct value
    text = pd.Series(pd.arrays.ArrowStringArray(pc.fill_null(values.cast(pa.string()), "")), dtype="string").str.strip()
    if kind == "event":
        text = text.str.lower()
    blank_v = (text == "").to_numpy(dtype=bool)
    unknown_v = (~blank_v & ~text.isin(EVENT_TYPES).to_numpy(dtype=bool)) if kind == "event" else np.zeros(len(text), bool)
    codes = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    is_null = codes < 0
    codes_safe = np.where(is_null, 0, codes)
    blank = is_null | (blank_v[codes_safe] if len(blank_v) else True)
    unknown = ~is_null & (unknown_v[codes_safe] if len(unknown_v) else False)
    # distinct cleaned values as categories (two raw values may strip to the same text)
    cat_of_v, cats = pd.factorize(text.where(~pd.Series(blank_v, index=text.index)).astype(object), use_na_sentinel=True)
    row_code = np.where(blank, -1, cat_of_v[codes_safe] if len(cat_of_v) else -1)
    return blank, unknown, pd.Categorical.from_codes(row_code, categories=pd.Index(cats, dtype=object).astype(str))


def _numbers(col, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(value per row, NaN when blank; rule broken per row). float32 goes through its text, as the text path
    reads it (0.1f is 0.1 there, not 0.10000000149)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, t), col)
        v = pc.cast(pc.cast(col, pa.string()), pa.float64())
    elif pa.types.is_floating(t) or pa.types.is_integer(t):
        v = pc.cast(col, pa.float64())
    else:
        return None
    x = v.to_numpy(zero_copy_only=False).astype(np.float64)
    blank = np.isnan(x)
    bad = ~blank & ~(np.abs(x) <= MAX_NUMBER)  # inf too
    if kind == "nonneg":
        bad |= x < 0
    return x, bad


def validate_arrow(rb, spec: TableSpec, *, now: pd.Timestamp, lines: np.ndarray) -> Validation | None:
    """Validate one Arrow record batch on its typed values; None when some column needs the text path."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = rb.schema.names
    if spec.unique or any(c not in names for c in spec.required):
        return None
    n = rb.num_rows
    bad = np.zeros(n, dtype=bool)
    typed: dict[str, object] = {}
    for name in names:
        kind, col = spec.kind_of(name), rb.column(name)
        required = name in spec.required and not (spec.name == "events" and name == "item_id")
        if kind in STRING_KINDS:
            got = _strings(col, kind)
            if got is None:
                return None
            blank, unknown, typed[name] = got
            bad |= unknown | (blank if required else False)
        elif kind == "timestamp":
            if not pa.types.is_timestamp(col.type) or col.type.tz is not None:
                return None
            try:
                ns = pc.cast(col, pa.timestamp("ns")).to_numpy(zero_copy_only=False)
            except pa.ArrowInvalid:  # out of the nanosecond range: the text path names it
                return None
            blank = np.isnat(ns)
            late = (now + pd.Timedelta(days=1)).to_datetime64()
            bad |= (blank if required else False) | (~blank & ((ns < MIN_TIMESTAMP.to_datetime64()) | (ns > late)))
            typed[name] = ns.astype("datetime64[ns]")
        elif kind in ("nonneg", "number"):
            got = _numbers(col, kind)
            if got is None:
                return None
            typed[name], broken = got
            bad |= broken | (np.isnan(typed[name]) if required else False)
        else:  # bool, date, or a column no rule knows: the text path
            return None
    if spec.name == "events":
        item = typed["item_id"]
        bad |= np.asarray(item.isna()) & ~np.asarray(typed["event"].isin(ITEMLESS_EVENTS))
    rejects = pd.DataFrame(columns=["row", "reason"])
    if bad.any():
        from omnidecide.store.chunks import as_text_frame

        bad_idx = np.flatnonzero(bad)
        rejects = validate(as_text_frame(rb.take(pa.array(bad_idx))), spec, now=now, lines=lines[bad_idx]).rejects
        if len(rejects) != len(bad_idx):  # the typed rules and the text disagree on a row: trust the text path
            return None
    keep = ~bad
    clean = pd.DataFrame({c: v[keep] for c, v in typed.items()})
    return Validation(clean=clean, rejects=rejects)
