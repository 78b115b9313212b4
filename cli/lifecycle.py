"""Model lifecycle verbs: `models list|show|promote|rollback|canary`, `train all`, `serve`, `retrain`, `monitor`, `report`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cli.app import app, console, models_app, train_app
from models.errors import InputError


@models_app.command("list")
def list_models(name: Optional[str] = typer.Argument(None, help="recommender, churn or allocator")) -> None:
    """Every stored version, newest first, with its stage and headline metrics."""
    from training import registry

    rows = registry.versions(name)
    table = Table("tag", "created", "stage", "metrics")
    for r in rows:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in list(r["metrics"].items())[:4])
        table.add_row(r["tag"], r["created"], r["stage"], metrics)
    console.print(table if rows else f"no versions in {registry.home()}")


@models_app.command("show")
def show(tag: str = typer.Argument(..., help="name:version, or a name for the serving version")) -> None:
    """Metadata of one version: metrics, params, data fingerprint, stage."""
    from training import registry

    name = tag.split(":")[0]
    model = registry.get(name, tag if ":" in tag else None)
    print(json.dumps({"tag": str(model.tag), "path": model.path, "stages": registry.stages(name),
                      **dict(model.info.metadata)}, indent=2, default=str))


@models_app.command("promote")
def promote(tag: str = typer.Argument(..., help="name:version to serve"),
            reason: str = typer.Option("manual", "--reason")) -> None:
    """Serve this version; the one it replaces is kept for rollback."""
    from training import registry

    st = registry.promote(tag, reason=reason)
    console.print(f"production: {st['production']}")


@models_app.command("rollback")
def rollback(name: str = typer.Argument(..., help="recommender, churn or allocator"),
             reason: str = typer.Option("manual", "--reason")) -> None:
    """Serve the previously promoted version again."""
    from training import registry

    st = registry.rollback(name, reason=reason)
    console.print(f"production: {st['production']}")


@models_app.command("canary")
def canary(tag: str = typer.Argument(..., help="name:version to try"),
           share: float = typer.Option(0.05, "--share", help="Share of traffic, 0..1 (default 5%)")) -> None:
    """Send a share of traffic to a version beside production."""
    from training import registry

    st = registry.set_canary(tag, share)
    console.print(f"canary: {st['canary']}")


@train_app.command("all")
def train_all(data: Path = typer.Option(..., "--data", help="Folder of canonical files, e.g. from `data synth`")) -> None:
    """Train every model whose input is in the folder; prints each tag."""
    from training import allocator, churn, recommender

    if not data.is_dir():
        raise InputError(f"--data {data}: not a folder")
    events = data / "events.csv"
    optional = lambda f: data / f if (data / f).exists() else None  # noqa: E731
    trained = 0
    if events.exists():
        print(recommender.train(events, items=optional("items.csv"), users=optional("users.csv")))
        print(churn.train(events))
        trained += 2
    if (data / "marketing_mix.csv").exists():
        print(allocator.train(data / "marketing_mix.csv"))
        trained += 1
    if not trained:
        raise InputError(f"--data {data}: no events.csv or marketing_mix.csv to train on")


@app.command("serve")
def serve(port: int = typer.Option(3000, "--port"), host: str = typer.Option("127.0.0.1", "--host")) -> None:
    """Serve every model over HTTP (BentoML): promoted versions, else the latest."""
    from training import registry

    env = {**os.environ, "BENTOML_HOME": str(registry.home())}
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "bentoml", "serve", "serving.service:OmniDecide", "--port", str(port), "--host", host]
    os.chdir(root)
    os.execve(sys.executable, cmd, env)  # become the server: signals (Ctrl-C, SIGTERM) reach it directly


def _not_yet(verb: str, issue: str) -> None:
    raise InputError(f"`omnidecide {verb}` is not implemented yet ({issue})")


@app.command("retrain")
def retrain() -> None:
    """Retrain, compare with production and promote when better (not implemented yet)."""
    _not_yet("retrain", "lifecycle issue to come")


@app.command("monitor")
def monitor() -> None:
    """Drift and quality watch over recent data (not implemented yet)."""
    _not_yet("monitor", "lifecycle issue to come")


@app.command("report")
def report() -> None:
    """Summary report of models and their figures (not implemented yet)."""
    _not_yet("report", "lifecycle issue to come")
