"""`omnidecide data fetch|synth|validate`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from omnidecide.cli.app import console, data_app


@data_app.command("fetch")
def fetch(dataset: str = typer.Argument(..., help="Dataset name: ml-100k, ml-1m"),
          out: Path = typer.Option(..., "--out", help="Folder for the canonical files")) -> None:
    """Download a public dataset (checksummed, cached) and write it as canonical files."""
    from omnidecide.training import ml100k, ml1m

    sources = {"ml-100k": ml100k, "ml-1m": ml1m}
    if dataset not in sources:
        raise typer.BadParameter(f"unknown dataset {dataset!r}; available: {', '.join(sources)}", param_hint="DATASET")
    written = sources[dataset].fetch(out)
    for name, n in written.items():
        console.print(f"{out / name}: {n} rows")


@data_app.command("synth")
def synth(out: Path = typer.Option(..., "--out", help="Folder for the canonical files and truth.json"),
          users: int = typer.Option(1000, "--users", min=1, help="Number of customers"),
          seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same files"),
          items: int = typer.Option(400, "--items", min=20, help="Catalogue size"),
          days: int = typer.Option(365, "--days", min=60, help="Days of event history"),
          corrupt: float = typer.Option(0.0, "--corrupt", min=0.0, max=0.5,
                                        help="Share of event rows to corrupt on purpose (counted in truth.json)"),
          world: str = typer.Option("default", "--world",
                                    help="default: the omnichannel world; grocery: repeat baskets shaped by published "
                                         "grocery facts (events, items, users, truth.json only)"),
          fmt: str = typer.Option("csv", "--format", help="csv: the planted world (truth.json); parquet: the scale world "
                                  "streamed in row groups (training/scale_world.py), e.g. --users 1000000 --items 200000")) -> None:
    """Generate the synthetic omnichannel world with planted, documented structure (see docs/data.md)."""
    from omnidecide.models.errors import InputError

    if fmt == "parquet":
        from omnidecide.training import scale_world

        if corrupt or world != "default":
            raise InputError("--format parquet writes the scale world; --corrupt and --world are for CSV worlds")
        made = scale_world.generate(out, n_users=users, n_items=items, seed=seed, days=days)
        console.print(f"wrote {out}: {made['counts']} in {made['seconds']} s")
        return
    if fmt != "csv":
        raise InputError(f"--format: unknown format {fmt!r}; use csv or parquet")
    from omnidecide.training import synth as synth_mod

    if world not in synth_mod.WORLDS:
        raise InputError(f"--world: unknown world {world!r}; one of {', '.join(synth_mod.WORLDS)}")
    if world == "grocery" and corrupt:
        raise InputError("--corrupt: only the default world can be corrupted")
    truth = synth_mod.generate(out, n_users=users, seed=seed, n_items=items, days=days, corrupt=corrupt, world=world)
    console.print(f"wrote {out}: {truth['counts']}")


@data_app.command("validate")
def validate(events: Optional[Path] = typer.Option(None, "--events", help="events.csv or .parquet"),
             items: Optional[Path] = typer.Option(None, "--items", help="items.csv"),
             users: Optional[Path] = typer.Option(None, "--users", help="users.csv"),
             touchpoints: Optional[Path] = typer.Option(None, "--touchpoints", help="touchpoints.csv"),
             store_stock: Optional[Path] = typer.Option(None, "--store-stock", help="store_stock.csv"),
             marketing_mix: Optional[Path] = typer.Option(None, "--marketing-mix", help="marketing_mix.csv")) -> None:
    """Count good and rejected rows by reason; write rejects beside each input; exit 1 if any row was rejected."""
    from omnidecide.store.io import load

    files = {"events": events, "items": items, "users": users, "touchpoints": touchpoints,
             "store_stock": store_stock, "marketing_mix": marketing_mix}
    given = {k: v for k, v in files.items() if v is not None}
    if not given:
        raise typer.BadParameter("name at least one file, e.g. --events events.csv")
    any_rejected = False
    for table, path in given.items():
        # counts only: a 50M-row file is never held; typed Parquet is checked on its values (the same rejects)
        loaded = load(path, table, keep=False, compact=True)
        print(f"{table}: {loaded.n_good} good, {loaded.n_rejected} rejected")
        for why, n in sorted(loaded.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {n:>8}  {why}")
        if loaded.rejects_path:
            print(f"  rejects written to {loaded.rejects_path}")
            for _, r in loaded.rejects.head(5).iterrows():
                print(f"    row {r['row']}: {r['reason']}")
        any_rejected |= loaded.n_rejected > 0
    raise typer.Exit(1 if any_rejected else 0)
