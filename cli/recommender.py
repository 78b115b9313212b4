"""`omnidecide train recommender` and `omnidecide recommend` (issue B)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.app import app, train_app
from models.errors import InputError


@train_app.command("recommender")
def train_recommender(events: Path = typer.Option(..., "--events"), items: Optional[Path] = typer.Option(None, "--items"),
                      users: Optional[Path] = typer.Option(None, "--users")) -> None:
    """Validate, train the GNN recommender, evaluate on a holdout, save a version; prints the tag."""
    raise InputError("train recommender is not implemented yet (issue B)")


@app.command("recommend")
def recommend(users: Path = typer.Option(..., "--users"), k: int = typer.Option(20, "--k"),
              output: Path = typer.Option(..., "--output"), model: Optional[str] = typer.Option(None, "--model"),
              store_id: Optional[str] = typer.Option(None, "--store-id"), channel: Optional[str] = typer.Option(None, "--channel")) -> None:
    """Batch top-K for each listed user id; writes user_id, rank, item_id, score, reason."""
    raise InputError("recommend is not implemented yet (issue B)")
