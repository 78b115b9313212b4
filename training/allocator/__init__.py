"""Train the budget allocator from a marketing-mix history and save a version in the model store."""
from __future__ import annotations

from pathlib import Path

from omnidecide.models.allocator.lift import parse_lift_tests
from omnidecide.models.errors import InputError
from omnidecide.models.allocator.mmm import history_from_frame
from omnidecide.store import registry
from omnidecide.training import progress
from omnidecide.training.allocator.pipeline import Config, run  # noqa: F401  (re-exported for the bench)
from omnidecide.store.io import load, read_flag_csv
from omnidecide.training.profile import data_end, profile


def read_lift_tests(path: Path, h) -> list:
    """lift.csv -> LiftTests on the history's weeks (InputError naming the file, row and field when bad)."""
    path = Path(path)
    # as text: a blank cell stays '' (named as empty), not the float nan
    df = read_flag_csv(path, "--lift-tests", dtype=str, keep_default_na=False)
    return parse_lift_tests(df, h.channels, h.dates, f"--lift-tests {path.name}")


def refuse_quarantined(loaded) -> None:
    """A marketing-mix history is one row per week, and the fit carries each week's spend into the weeks after it
    (adstock): a quarantined week (negative or non-numeric spend or revenue, a duplicate date, a blank spend cell...)
    would leave a hole the fit reads as two adjacent weeks, so any rejected row stops training, naming its lines and
    reasons. A blank spend cell is missing data, not zero spend (docs/data.md)."""
    r = loaded.rejects
    if not len(r):
        return
    where = "; ".join(f"{why} in line(s) {', '.join(map(str, g['row'].head(10)))}"
                      + (f" and {len(g) - 10} more" if len(g) > 10 else "") for why, g in r.groupby("reason"))
    blank = r["reason"].astype(str).str.startswith("missing spend_").any()
    raise InputError(f"{loaded.path}: rows that cannot be used: {where}. Every week is needed (its spend carries into "
                     "the next weeks): correct these rows" + (". A blank spend cell is missing data, not zero spend: "
                                                             "write the week's spend, or 0 where nothing was spent"
                                                             if blank else ""))


def train(history: Path, *, seed: int = 0, timesteps: int | None = None, n_boot: int | None = None,
          lift_tests: Path | None = None) -> str:
    """Fit, train the residual agent, evaluate, save; returns the tag (`allocator:<version>`). lift_tests: lift.csv
    (docs/data.md) whose measured channel revenue the fit also matches."""
    with progress.task("train allocator", 3):
        progress.step(f"load and validate {Path(history).name}")
        loaded = load(history, "marketing_mix")
        refuse_quarantined(loaded)
        h = history_from_frame(loaded.data, str(history))
        lift = read_lift_tests(lift_tests, h) if lift_tests is not None else None
        cfg = Config(seed=seed)
        if timesteps is not None:
            cfg.timesteps = timesteps
        if n_boot is not None:
            cfg.n_boot = n_boot
        progress.step("fit the response model with bootstrap, train the agent, evaluate")
        alloc, metrics = run(h, cfg, lift)
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}
        progress.step("save")
        return registry.save("allocator", alloc.save, metrics=metrics, params=params,
                             data_fingerprint=registry.fingerprint([history] + ([lift_tests] if lift_tests else [])),
                             extra={"channels": h.channels, "diagnostics": alloc.info.get("diagnostics", {}),
                                    "profile": profile("marketing_mix", loaded.data),
                                    "data_end": data_end(loaded.data, "date")})
