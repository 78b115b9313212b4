"""Reading canonical files: every loader goes through `load`, so bad rows are quarantined the same way.

Rows that break a rule are written, with their line number and reason, to `<file>.rejects.csv` beside
the input (or the user cache dir when that folder is read-only) and counted in the returned report.
Nothing is dropped without a trace.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import platformdirs

from omnidecide.models.schema import TABLES, SchemaError, TableSpec, Validation, validate

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """A validated table, what was quarantined, and where the rejects were written."""

    path: Path
    data: pd.DataFrame
    rejects: pd.DataFrame
    rejects_path: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_good(self) -> int:
        return len(self.data)

    @property
    def n_rejected(self) -> int:
        return len(self.rejects)

    def summary(self) -> str:
        text = f"{self.path}: {self.n_good} good rows, {self.n_rejected} rejected"
        if self.counts:
            text += " (" + ", ".join(f"{why}: {n}" for why, n in sorted(self.counts.items())) + ")"
        if self.rejects_path:
            text += f"; rejects written to {self.rejects_path}"
        return text


def _scan_lines(path: Path) -> tuple[list[int], list[tuple[int, int]]]:
    """Line numbers of well-formed rows, and (line, field count) of rows whose width differs from the header's."""
    good, bad = [], []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        width = len(next(reader, []))
        for row in reader:
            if row:
                (good.append(reader.line_num) if len(row) == width else bad.append((reader.line_num, len(row))))
    return good, bad


def read_strings(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray | None]:
    """All columns as strings (ids never become ints); rows with the wrong number of fields quarantined.

    Returns (rows, malformed rejects, line number of each kept row or None when no line was skipped).
    """
    kw = dict(dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8", encoding_errors="replace")
    try:
        return pd.read_csv(path, **kw), pd.DataFrame(columns=["row", "reason"]), None
    except pd.errors.EmptyDataError as e:
        raise SchemaError(f"{path}: the file is empty") from e
    except pd.errors.ParserError:
        good, bad = _scan_lines(path)
        df = pd.read_csv(path, engine="python", on_bad_lines="skip", **kw)
        rejects = pd.DataFrame({"row": [b[0] for b in bad], "reason": [f"wrong number of fields ({b[1]})" for b in bad]})
        return df, rejects, np.array(good[: len(df)])


def rejects_path_for(path: Path) -> Path:
    return path.with_name(path.stem + ".rejects.csv")


def write_rejects(path: Path, rejects: pd.DataFrame) -> Path:
    target = rejects_path_for(path)
    try:
        rejects.to_csv(target, index=False)
    except OSError:
        cache = Path(platformdirs.user_cache_dir("omnidecide")) / "rejects"
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / target.name
        rejects.to_csv(target, index=False)
    return target


def load(path: str | Path, table: str | TableSpec, *, write: bool = True) -> Loaded:
    """Read and validate one canonical file. Raises SchemaError (naming the file) when it is unusable."""
    path = Path(path)
    spec = TABLES[table] if isinstance(table, str) else table
    if not path.exists():
        raise SchemaError(f"{path}: no such file")
    raw, malformed, lines = read_strings(path)
    try:
        result: Validation = validate(raw, spec, lines=lines)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from e
    rejects = pd.concat([malformed, result.rejects], ignore_index=True) if len(malformed) else result.rejects
    counts = rejects["reason"].value_counts().to_dict() if len(rejects) else {}
    loaded = Loaded(path=path, data=result.clean, rejects=rejects, counts=counts)
    if len(rejects) and write:
        loaded.rejects_path = write_rejects(path, rejects)
    if len(rejects):
        log.warning(loaded.summary())
    return loaded


def load_folder(folder: str | Path) -> dict[str, Loaded]:
    """Every canonical file present in a folder (as written by `omnidecide data synth`), keyed by table."""
    folder = Path(folder)
    return {name: load(folder / f"{name}.csv", name) for name in TABLES if (folder / f"{name}.csv").exists()}
