"""`omnidecide train churn` and `omnidecide predict churn` (issue C)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from omnidecide.cli.app import audit_export, console, predict_app, train_app
from omnidecide.models.errors import InputError


@train_app.command("churn")
def train_churn(events: Path = typer.Option(..., "--events", help="Canonical events.csv (rich event log or item-less orders)"),
                horizon_days: int = typer.Option(90, "--horizon-days", help="Churn = no purchase in [as-of, as-of + H days)"),
                as_of: Optional[str] = typer.Option(None, "--as-of", help="Validation as-of (YYYY-MM-DD); default: the latest "
                                                    "date whose label window lies inside the events")) -> None:
    """Train the LSTM churn predictor; saves a version with metrics; prints the tag.

    Earlier as-of windows (every 14 days, labels ending before the validation as-of) are stacked for
    training; the as-of window is the validation set, on which the probabilities are calibrated.
    """
    from omnidecide.store import registry
    from omnidecide.training.churn import train

    tag = train(events, horizon_days=horizon_days, as_of=as_of)
    m = registry.get("churn", tag).info.metadata
    met = m["metrics"]
    console.print(f"validation as-of {m['training']['validation_as_of']}: AUC {met['val_auc']:.3f}, AP {met['val_ap']:.3f}, "
                  f"Brier {met['val_brier']:.3f}, ECE {met['val_ece']:.3f} ({met['val_customers']} customers, "
                  f"churn rate {met['val_churn_rate']:.2f}); trained in {met['train_seconds']:.0f} s", highlight=False)
    print(tag)


@predict_app.command("churn")
def predict_churn(events: Path = typer.Option(..., "--events", help="Canonical events (.csv or .parquet); only events before as-of are used"),
                  as_of: str = typer.Option(..., "--as-of", help="Score as of this date (YYYY-MM-DD)"),
                  horizon_days: int = typer.Option(90, "--horizon-days", help="Must match the model's horizon"),
                  output: Path = typer.Option(..., "--output", help="CSV to write"),
                  model: Optional[str] = typer.Option(None, "--model", help="Tag; default: the promoted version, else the "
                                                      "latest trained for this horizon"),
                  previous: Optional[Path] = typer.Option(None, "--previous", help="An earlier CHURN.csv: adds "
                                                          "previous_probability, change and alert (moved > 15 points)"),
                  publish: bool = typer.Option(False, "--publish", help="Also store the scores in the service's "
                                               "database, for /customer_scores and /bid by customer id"),
                  workers: int = typer.Option(0, "--workers", min=0, help="0: score in this process; N: on Ray with N "
                                              "workers (a local Ray started for the job unless --ray-address)"),
                  ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to run on, e.g. "
                                                            "auto or ray://head:10001 (README: Scale-out)")) -> None:
    """One row per customer: user_id, churn_probability, risk_tier, segment, expected_spend, reason
    (with --previous also previous_probability, change, alert)."""
    import pandas as pd

    from omnidecide.models.churn import features as F
    from omnidecide.serving.churn import ChurnService
    from omnidecide.store.io import load

    when = as_of_timestamp(as_of)
    service = ChurnService(model, horizon_days=horizon_days)
    # only what scoring reads: the columns the features use, the events before as-of (at 50M rows, GBs)
    loaded = load(events, "events", columns=list(F.COLUMNS), compact=True, where=lambda d: d["timestamp"] < when)
    if len(loaded.data) and service.horizon_days < (gap := (when - loaded.data["timestamp"].max()) / pd.Timedelta(days=1)):
        console.print(f"warning: --as-of {when.date()} is {gap:.0f} days after the latest event before it "
                      f"({loaded.data['timestamp'].max().date()}), more than the {service.horizon_days}-day horizon: "
                      "every customer looks lapsed (high risk); "
                      "score as of the day after the events end", highlight=False)
    if workers or ray_address:
        from omnidecide.serving.batch import churn_on_ray
        service.check_horizon(horizon_days)
        table = churn_on_ray(service.tag, loaded.data, when, horizon_days, address=ray_address, workers=workers or 2)
    else:
        table = service.score_frame(loaded.data, when, horizon_days)
    if previous is not None:
        from omnidecide.models.churn.segments import score_changes
        table = score_changes(table, read_previous(previous))
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(output, index=False)
    tiers = table["risk_tier"].value_counts().to_dict()
    console.print(f"{output}: {len(table)} customers scored with {service.tag} "
                  f"(high {tiers.get('high', 0)}, medium {tiers.get('medium', 0)}, low {tiers.get('low', 0)})", highlight=False)
    audit_export("predict churn", output, len(table), len(table), service.tag)
    if publish:
        from omnidecide.store import db, scores

        n = scores.publish(table, service.tag, str(when.date()))
        console.print(f"published {n} scores to {db.connect().describe()}", highlight=False)
    if previous is not None:
        rising = int((table["alert"] & (table["change"] > 0)).sum())
        console.print(f"score alerts (moved > 15 points since {previous.name}): {int(table['alert'].sum())}, "
                      f"{rising} of them rising", highlight=False)


def as_of_timestamp(as_of: str):
    """`--as-of` as the naive UTC timestamp the events are held in: an offset (`2026-07-01T00:00+08:00`) is converted
    (compared as it was, it was a TypeError traceback); empty text is not a date (pandas reads it as NaT, and the
    answer was "no events before as-of NaT")."""
    import pandas as pd

    try:
        when = pd.Timestamp(as_of)
    except (ValueError, TypeError) as e:
        raise InputError(f"--as-of {as_of!r}: not a date (use YYYY-MM-DD)") from e
    if pd.isna(when):
        raise InputError(f"--as-of {as_of!r}: not a date (use YYYY-MM-DD)")
    return when.tz_convert("UTC").tz_localize(None) if when.tzinfo is not None else when


def read_previous(path: Path):
    """An earlier `predict churn` output; a row whose probability is not a number in [0, 1] is an error naming it."""
    import pandas as pd

    from omnidecide.store.io import read_flag_csv

    prev = read_flag_csv(path, "--previous", dtype={"user_id": str})
    missing = {"user_id", "churn_probability"} - set(prev.columns)
    if missing:
        raise InputError(f"--previous {path}: missing column(s) {', '.join(sorted(missing))}")
    p = pd.to_numeric(prev["churn_probability"], errors="coerce")
    bad = prev.index[p.isna() | (p < 0) | (p > 1) | prev["user_id"].isna()]
    if len(bad):
        raise InputError(f"--previous {path}: row {bad[0] + 2}: churn_probability "
                         f"{str(prev.loc[bad[0], 'churn_probability'])!r} is not a probability (or user_id is empty); "
                         f"{len(bad)} such row(s)")
    twice = prev.index[prev["user_id"].str.strip().duplicated()]
    if len(twice):  # which of two scores is "previous"? guessing would make the change and alert up
        raise InputError(f"--previous {path}: row {twice[0] + 2}: user_id {prev.loc[twice[0], 'user_id']!r} is listed "
                         f"again; {len(twice)} such row(s)")
    return prev.assign(churn_probability=p)
