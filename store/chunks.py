"""Canonical files read in row batches, CSV or Parquet, so a 50M-row file is validated without holding its text.

Why batches: `validate` types every column from text; on the whole file that costs several copies of it. Here each
batch is read as strings, validated and reduced to its typed good rows (or just counted), then dropped.

Row numbers: a reject's `row` is its line in the CSV (header = line 1), and for Parquet the same number a CSV of
the same rows would give (row index + 2), so a file converted from one format to the other names the same rows.

Tables with a unique key (items, users, store_stock, marketing_mix) are validated in one batch: duplicates are
judged against every earlier row, rejected ones included, as in a single pass. They are catalogues and per-customer
tables (at most a few million rows); the large tables (events, touchpoints) have no key and are batched.

Duplicate events (`TableSpec.dedupe`): a good row that carries an order_id or event_id and whose text is identical,
column for column, to an earlier good row of the file is a redelivery, quarantined as `duplicate row` (docs/data.md
says why rows without an id are kept). Judged on every column even when a job reads only some, across batches through
a 64-bit hash of each row (8 bytes per judged row held while the file is read; two different rows share a hash with
odds of about n^2 / 3.7e19, under 1e-4 at 50M rows, and the later one would then be quarantined, visibly).
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from omnidecide.models.schema import SchemaError, TableSpec, Validation, validate

BATCH_ROWS = 500_000
DEDUPE_IDS = ("order_id", "event_id")  # a row naming one of these is one event: its exact copy is a redelivery
PARQUET_SUFFIXES = (".parquet", ".pq")
# index_col=False: a first data row with one field more than the header made pandas take the first column for an index
# and shift every row of the file one column left (good rows quarantined for the wrong reason, ids lost)
_CSV_KW = dict(dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8", index_col=False)
UNDECODABLE = "\ufffd"  # what a byte that is not UTF-8 reads as in a lossy read (`errors="replace"`)


def is_parquet(path: Path) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


@dataclass
class Batch:
    """Raw rows as text, the file row number of each, and rows the reader itself could not split."""

    raw: pd.DataFrame
    lines: np.ndarray
    malformed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["row", "reason"]))
    keys: np.ndarray | None = None  # hash of each row's full text, where duplicates are judged (else None)


def row_keys(raw: pd.DataFrame) -> np.ndarray | None:
    """A 64-bit hash of each row's text in every column, for the rows that carry an order_id or event_id; 0 (never a
    duplicate) for the others, which two real events can share (two views in one second, two purchases on one day
    in a date-only log). None when the file has neither column."""
    ids = [c for c in DEDUPE_IDS if c in raw.columns]
    if not ids:
        return None
    named = np.zeros(len(raw), dtype=bool)
    for c in ids:
        named = named | (raw[c].astype(str).str.strip() != "").to_numpy(dtype=bool)
    keys = np.zeros(len(raw), dtype=np.uint64)
    if named.any():
        keys[named] = _hash_rows(raw[named])
    return keys


def _hash_rows(df: pd.DataFrame) -> np.ndarray:
    """Each row's hash: every column's values hashed once per distinct value (Arrow's dictionary encoding finds them,
    pandas' SipHash hashes them) and combined as h * K + column hash (mod 2^64, K odd), so two rows that differ in one
    column never share a hash and rows that differ in more share one with odds of 2^-64. Through Arrow, not a pandas
    categorical: about 0.4 s instead of 0.75-1.1 s for 500k rows of 9 columns, an event id unique per row among them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = np.zeros(len(df), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in df.columns:
            enc = pc.dictionary_encode(pa.array(df[c]), null_encoding="encode")  # a null is a value of its own
            enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
            distinct = enc.dictionary.to_numpy(zero_copy_only=False).astype(object)
            out = out * _MIX + pd.util.hash_array(distinct, categorize=False)[enc.indices.to_numpy()]
    return out


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it is invertible mod 2^64


class Seen:
    """Row keys met so far in a file, so a redelivered row is caught however far apart the copies are.

    Held as sorted runs whose sizes at least halve down the list (a log-structured merge): a batch's new keys join as
    a run and equal-or-smaller runs merge into it, so each key is copied about log2(file / batch) times instead of
    once per batch. Keys are looked up and merged in sorted order: a binary search for sorted needles stays in cache
    and the merge of two sorted runs is linear (timsort). 10M keys in batches of 500k: 14.9 s as one array searched
    with keys in file order and re-sorted whole per batch, 2.9 s so (BENCHMARKS, Scale)."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def repeated(self, keys: np.ndarray) -> np.ndarray:
        """True where a key (not 0) was met before, earlier in the file or earlier in `keys`; remembers the new ones."""
        order = np.argsort(keys, kind="stable")  # stable: of equal keys in the batch the first in the file is kept
        ks = keys[order]
        dup = np.zeros(len(ks), dtype=bool)
        dup[1:] = ks[1:] == ks[:-1]
        for run in self.runs:
            dup |= run[np.searchsorted(run, ks).clip(max=len(run) - 1)] == ks
        judged = ks != 0
        dup &= judged
        self._add(ks[judged & ~dup])
        out = np.empty(len(ks), dtype=bool)
        out[order] = dup
        return out

    def _add(self, run: np.ndarray) -> None:
        while self.runs and len(self.runs[-1]) <= len(run):
            run = np.concatenate([self.runs.pop(), run])
            run.sort(kind="stable")  # two sorted runs: a linear merge, in place (a copy's fresh pages cost more)
        if len(run):
            self.runs.append(run)


def drop_repeats(b: Batch, v: Validation, seen: Seen) -> Validation:
    """Move the good rows of `v` that repeat an earlier row (by `b.keys`) to its rejects as `duplicate row`."""
    pos = np.flatnonzero(~np.isin(b.lines, v.rejects["row"].to_numpy(dtype=np.int64)))  # the good rows' places
    dup = seen.repeated(b.keys[pos])
    if not dup.any():
        return v
    rej = b.raw.iloc[pos[dup]].reset_index(drop=True)
    rej.insert(0, "reason", "duplicate row")
    rej.insert(0, "row", b.lines[pos[dup]].astype(int))
    rejects = pd.concat([v.rejects, rej], ignore_index=True).sort_values("row", kind="stable", ignore_index=True)
    return Validation(v.clean[~dup].reset_index(drop=True), rejects)


def _csv_batches(path: Path, rows: int, errors: str = "strict") -> Iterator[Batch]:
    """Fast reader; raises pandas' ParserError at the first row with the wrong number of fields, and (`errors` strict)
    UnicodeDecodeError at the first byte that is not UTF-8."""
    kw = dict(_CSV_KW, encoding_errors=errors)
    try:
        with pd.read_csv(path, chunksize=rows, **kw) as reader:
            done = 0
            for df in reader:
                df.columns = [str(c).strip() for c in df.columns]
                yield Batch(df, np.arange(done, done + len(df)) + 2)
                done += len(df)
        if done == 0:  # header only: still one (empty) batch, so missing columns are reported
            df = pd.read_csv(path, nrows=0, **kw)
            yield Batch(df.rename(columns=lambda c: str(c).strip()), np.zeros(0, dtype=int))
    except pd.errors.EmptyDataError as e:
        raise SchemaError(f"{path}: the file is empty") from e


def _csv_careful(path: Path, rows: int, errors: str = "replace") -> Iterator[Batch]:
    """Slow reader for rare files: Python's csv module, so every kept row's line is known and a row with more fields
    than the header is quarantined as `wrong number of fields (N)` wherever it is (pandas' readers took a wider first
    row as the sign of an index column, or cut it to the header's width). A row with fewer fields is kept, its
    missing cells blank, so validation names it."""
    with open(path, newline="", encoding="utf-8-sig", errors=errors) as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        kept, lines, bad = [], [], []
        start = reader.line_num + 1  # a record's first line (one with a quoted line break ends further down)
        for row in reader:
            at, start = start, reader.line_num + 1
            if not row:  # a blank line (pandas skips them too)
                continue
            if len(row) > len(header):
                bad.append((at, len(row)))
            else:
                kept.append(row + [""] * (len(header) - len(row)))
                lines.append(at)
    df = pd.DataFrame(kept, columns=header, dtype=object) if kept else pd.DataFrame(columns=header, dtype=object)
    at = np.array(lines, dtype=np.int64)
    for start in range(0, max(len(df), 1), rows):
        first = start == 0
        yield Batch(df.iloc[start: start + rows].reset_index(drop=True), at[start: start + rows],
                    pd.DataFrame({"row": [b[0] for b in bad] if first else [],
                                  "reason": [f"wrong number of fields ({b[1]})" for b in bad] if first else []}))


def undecodable(b: Batch, v: Validation) -> Validation:
    """Move the good rows of `v` with a cell that held bytes that are not UTF-8 (read lossily as U+FFFD) to its
    rejects as `unparsable <col>`: `café` in Latin-1 would otherwise load as `caf?`, and two ids that differ only in
    such a letter would be one customer or one item."""
    if not len(v.clean):
        return v
    pos = np.flatnonzero(~np.isin(b.lines, v.rejects["row"].to_numpy(dtype=np.int64)))  # the good rows' places
    raw = b.raw.iloc[pos].reset_index(drop=True)
    reason = pd.Series(pd.NA, index=raw.index, dtype="object")
    for c in raw.columns:
        hit = raw[c].astype(str).str.contains(UNDECODABLE, regex=False).to_numpy(dtype=bool)
        reason[hit & reason.isna().to_numpy()] = f"unparsable {c}"
    bad = reason.notna().to_numpy()
    if not bad.any():
        return v
    rej = raw[bad].reset_index(drop=True)
    rej.insert(0, "reason", reason[bad].to_numpy())
    rej.insert(0, "row", b.lines[pos[bad]].astype(int))
    rejects = pd.concat([v.rejects, rej], ignore_index=True).sort_values("row", kind="stable", ignore_index=True)
    return Validation(v.clean[~bad].reset_index(drop=True), rejects)


def _as_text(col) -> pd.arrays.ArrowStringArray:
    """One Arrow column as the text a CSV would hold (nulls and float NaN blank), kept in Arrow memory: no Python
    string per cell, which is most of the cost at 10^7 rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.dictionary_decode()
        t = col.type
    if pa.types.is_floating(t):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, t), col)
    try:
        text = col if pa.types.is_string(t) else pc.cast(col, pa.string())  # timestamps: "2024-01-02 10:00:00"
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # lists, structs, maps, bytes that are not UTF-8: text
        # per cell, in Python (rare columns; an extra column of tags was a traceback for the whole file)
        text = pa.array([None if v is None else v.decode("utf-8", "replace") if isinstance(v, bytes)
                         else json.dumps(v, default=str, ensure_ascii=False) for v in col.to_pylist()], pa.string())
    return pd.arrays.ArrowStringArray(pc.fill_null(text, ""))


def as_text_frame(rb) -> pd.DataFrame:
    """One Arrow record batch as the text frame the validator reads."""
    return pd.DataFrame({n: _as_text(rb.column(n)) for n in rb.schema.names})


def _parquet_file(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError subclasses for a file that is not Parquet
        raise SchemaError(f"{path}: not a readable Parquet file ({e})") from e


def _parquet_batches(path: Path, rows: int, columns: list[str] | None = None) -> Iterator[Batch]:
    f = _parquet_file(path)
    done = 0
    names = [n for n in f.schema_arrow.names if columns is None or n in columns]
    if f.metadata.num_rows == 0:
        yield Batch(pd.DataFrame(columns=names, dtype=str), np.zeros(0, dtype=int))
        return
    for rb in f.iter_batches(batch_size=rows, columns=names):
        raw = as_text_frame(rb)
        yield Batch(raw, np.arange(done, done + len(raw)) + 2)
        done += len(raw)


def _check_header(path: Path) -> bool:
    """Refuse a CSV header that names a column twice: pandas would rename the second `amount` to `amount.1` and
    every row would silently take the first one's value. True when the first data row has more fields than the
    header: pandas' fast reader would cut it to the header's width without a word, so the careful reader must read
    the file."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        first = next((row for row in reader if row), [])
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise SchemaError(f"{path}: column(s) {twice} appear more than once in the header; keep one of each")
    return len(first) > len(header)


def _blank_line_inside(path: Path, block: int = 1 << 24) -> bool:
    """Is there an empty line before the file's last non-blank one? The fast reader skips it and numbers the rows
    after it one line too early (a reject named row 3 that is on line 4), so such a file is read carefully. One pass
    over the bytes, in blocks (about a second per GB)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 65536))
        tail = f.read()
        content_end = size - (len(tail) - len(tail.rstrip(b"\r\n \t")))  # trailing blank lines do not shift rows
        f.seek(0)
        blank = b"\n\r\n" if f.readline().endswith(b"\r\n") else b"\n\n"  # the header's line ending is the file's
        f.seek(0)
        done, prev = 0, b""
        while done < content_end:
            chunk = prev + f.read(block)
            hit = chunk.find(blank)
            if hit >= 0 and done - len(prev) + hit + 1 < content_end:
                return True
            if len(chunk) == len(prev):
                return False
            done += len(chunk) - len(prev)
            prev = chunk[-2:]
    return False


def batches(path: Path, spec: TableSpec, rows: int = BATCH_ROWS, careful: bool = False,
            columns: list[str] | None = None, errors: str = "strict") -> Iterator[Batch]:
    """The file's rows as text in batches of `rows` (one batch for a table with a unique key). `careful`: the CSV
    reader that quarantines rows with the wrong number of fields instead of stopping at them (also used whenever the
    first data row is too wide). `columns`: read only these (those the file has). `errors`: "strict" raises
    UnicodeDecodeError at a byte that is not UTF-8; "replace" reads it as U+FFFD (see `undecodable`)."""
    path = Path(path)
    rows = (1 << 62) if spec.unique else rows
    if is_parquet(path):
        gen = _parquet_batches(path, rows, None if spec.dedupe else columns)
    else:
        wide = _check_header(path)
        slow = careful or wide or _blank_line_inside(path)
        gen = _csv_careful(path, rows, errors) if slow else _csv_batches(path, rows, errors)
    if columns is None and not spec.dedupe:
        return gen
    return (Batch(b.raw if columns is None else b.raw[[c for c in b.raw.columns if c in columns]], b.lines,
                  b.malformed, row_keys(b.raw) if spec.dedupe else None) for b in gen)


def _compact_batches(path: Path, spec: TableSpec, rows: int, columns: list[str] | None,
                     now: pd.Timestamp) -> Iterator[tuple[Batch | None, Validation]] | None:
    """Typed Parquet batches validated on their Arrow values (store/compact.py); a batch the typed rules cannot
    judge comes back as text (its Validation None) for the text path."""
    from omnidecide.store.compact import validate_arrow

    f = _parquet_file(path)
    names = [n for n in f.schema_arrow.names if columns is None or n in columns]
    if spec.unique or f.metadata.num_rows == 0:
        return None
    done = 0

    def gen():
        nonlocal done
        dedupe = spec.dedupe and any(c in f.schema_arrow.names for c in DEDUPE_IDS)
        for rb in f.iter_batches(batch_size=rows, columns=None if dedupe else names):
            lines = np.arange(done, done + rb.num_rows) + 2
            done += rb.num_rows
            v = validate_arrow(rb.select(names), spec, now=now, lines=lines)
            text = as_text_frame(rb) if v is None or dedupe else None  # every column: duplicates are whole rows
            yield (None if text is None else Batch(text[names], lines, keys=row_keys(text) if dedupe else None)), v
    return gen()


@dataclass
class Scan:
    """Outcome of validating a file batch by batch."""

    clean: list[pd.DataFrame]
    rejects: list[pd.DataFrame]
    counts: Counter
    n_good: int = 0


def scan(path: Path, spec: TableSpec, *, keep_clean: bool = True, keep_rejects: bool = True,
         rows: int | None = None, now: pd.Timestamp | None = None, columns: list[str] | None = None,
         compact: bool = False, where: Callable[[pd.DataFrame], np.ndarray] | None = None) -> Scan:
    """Validate `path` batch by batch (`rows` per batch, default BATCH_ROWS); keep typed good rows (or only count
    them) and rejects with their reasons. `columns`: validate and keep only these (the required ones are always
    read). `compact`: string columns kept as categoricals, typed Parquet validated on Arrow (store/compact.py).
    `where`: of the good rows (all counted), keep those it marks (e.g. the events before a date)."""
    from omnidecide.store.compact import compact as to_compact

    rows = rows or BATCH_ROWS
    now = now or pd.Timestamp.now(tz="UTC").tz_convert(None)
    if columns is not None:
        columns = list(dict.fromkeys([*spec.required, *columns]))
    typed = _compact_batches(Path(path), spec, rows, columns, now) if compact and is_parquet(path) else None
    careful, errors = False, "strict"
    while True:  # at most three reads: a malformed row or a byte that is not UTF-8 starts the file again, more slowly
        out, seen = Scan([], [], Counter()), Seen()
        try:
            pairs = typed if typed is not None else ((b, None) for b in batches(path, spec, rows, careful, columns,
                                                                                errors))
            for b, v in pairs:
                if v is None:
                    try:
                        v = validate(b.raw, spec, now=now, lines=b.lines)
                    except SchemaError as e:
                        raise SchemaError(f"{path}: {e}") from e
                    if compact and keep_clean:
                        v = Validation(to_compact(v.clean, spec), v.rejects)
                if b is not None and errors != "strict":
                    v = undecodable(b, v)
                if b is not None and b.keys is not None:
                    v = drop_repeats(b, v, seen)
                malformed = b.malformed if b is not None else None
                rej = pd.concat([malformed, v.rejects], ignore_index=True) if malformed is not None and len(malformed) \
                    else v.rejects
                out.counts.update(rej["reason"].value_counts().to_dict() if len(rej) else {})
                out.n_good += len(v.clean)
                if keep_clean:
                    out.clean.append(v.clean if where is None else v.clean[np.asarray(where(v.clean))])
                if keep_rejects and len(rej):
                    out.rejects.append(rej)
            return out
        except pd.errors.ParserError:  # a malformed CSV row: start again with the careful reader
            if careful:
                raise
            careful = True
        except UnicodeDecodeError:  # not UTF-8 somewhere: read it lossily, quarantine the rows that held such bytes
            if errors != "strict":
                raise
            errors = "replace"
