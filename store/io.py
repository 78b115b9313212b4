"""Reading canonical files: every loader goes through `load`, so bad rows are quarantined the same way.

Rows that break a rule are written, with their line number and reason, to `<file>.rejects.csv` beside
the input (or the user cache dir when that folder is read-only) and counted in the returned report.
Nothing is dropped without a trace. CSV and Parquet are both read in row batches (`store/chunks.py`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import platformdirs

from omnidecide.models.schema import TABLES, SchemaError, TableSpec

log = logging.getLogger(__name__)


def read_flag_csv(path: str | Path, flag: str, **read_csv) -> pd.DataFrame:
    """A small side file a command-line flag names (--actuals, --previous, --lift-tests), read whole with pandas
    (`read_csv`: its options; a BOM is skipped): a missing path, a folder or an unreadable CSV is an InputError
    naming the flag and the path, never a traceback."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{flag} {path}: " + ("is a folder, not a file" if path.is_dir() else "no such file"))
    try:
        return pd.read_csv(path, encoding="utf-8-sig", **read_csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SchemaError(f"{flag} {path}: not a readable CSV ({e})") from e


@dataclass
class Loaded:
    """A validated table, what was quarantined, and where the rejects were written."""

    path: Path
    data: pd.DataFrame
    rejects: pd.DataFrame
    rejects_path: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    good: int | None = None  # good rows counted (when `data` was not kept)

    @property
    def n_good(self) -> int:
        return len(self.data) if self.good is None else self.good

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


def load(path: str | Path, table: str | TableSpec, *, write: bool = True, keep: bool = True,
         columns: list[str] | None = None, compact: bool = False, where=None) -> Loaded:
    """Read and validate one canonical file, CSV or Parquet (by suffix), in row batches. Raises SchemaError (naming
    the file) when it is unusable or has no data rows. `keep=False` only counts: `data` is then empty (validation of a huge file).
    `columns`: read and validate only these (plus the required ones). `compact`: string columns as categoricals and
    typed Parquet checked without text (store/compact.py): what a job over 50M rows needs. `where(frame)`: keep only
    the good rows it marks (every row is still validated and counted)."""
    from omnidecide.store.chunks import scan

    path = Path(path)
    spec = TABLES[table] if isinstance(table, str) else table
    if not path.exists():
        raise SchemaError(f"{path}: no such file")
    if not path.is_file():  # a folder (or a device): reading it would end in a traceback, not a message
        raise SchemaError(f"{path}: is a folder, not a file" if path.is_dir() else f"{path}: not a regular file")
    result = scan(path, spec, keep_clean=keep, columns=columns, compact=compact, where=where)
    if result.n_good == 0 and not result.counts:  # a header alone would pass as a clean file of nothing
        raise SchemaError(f"{path}: no data rows (only a header)")
    columns = ["row", "reason"]
    rejects = pd.concat(result.rejects, ignore_index=True) if result.rejects else pd.DataFrame(columns=columns)
    if result.clean:
        if compact:
            from omnidecide.store.compact import concat

            data = concat(result.clean)
        else:
            data = pd.concat(result.clean, ignore_index=True) if len(result.clean) > 1 else result.clean[0]
    else:
        data = pd.DataFrame()
    loaded = Loaded(path=path, data=data, rejects=rejects, counts=dict(result.counts), good=result.n_good)
    if compact:  # a big load: its chunks' freed buffers back to the system now, not held through the job
        from omnidecide.store.compact import release

        del result
        release()
    if len(rejects) and write:
        loaded.rejects_path = write_rejects(path, rejects)
    if len(rejects):
        log.warning(loaded.summary())
    return loaded


def canonical_file(folder: str | Path, name: str) -> Path:
    """`<folder>/<name>.csv`, or `<name>.parquet` when only that exists (the scale world writes Parquet)."""
    folder = Path(folder)
    pq = folder / f"{name}.parquet"
    csv_ = folder / f"{name}.csv"
    return pq if pq.exists() and not csv_.exists() else csv_


def load_folder(folder: str | Path) -> dict[str, Loaded]:
    """Every canonical file present in a folder (as written by `omnidecide data synth`), keyed by table."""
    files = {name: canonical_file(folder, name) for name in TABLES}
    return {name: load(path, name) for name, path in files.items() if path.exists()}
