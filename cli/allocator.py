"""`omnidecide train allocator`, `omnidecide allocate`, `omnidecide attribute` (issue D)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.app import app, train_app
from models.errors import InputError


@train_app.command("allocator")
def train_allocator(history: Path = typer.Option(..., "--history")) -> None:
    """Fit the response model, build the env, train the agent, evaluate, save a version; prints the tag."""
    raise InputError("train allocator is not implemented yet (issue D)")


@app.command("allocate")
def allocate(budget: float = typer.Option(..., "--budget"), periods: int = typer.Option(..., "--periods"),
             output: Path = typer.Option(..., "--output"), reserve: float = typer.Option(0.15, "--reserve"),
             min_: list[str] = typer.Option([], "--min"), max_: list[str] = typer.Option([], "--max"),
             roi_floor: list[str] = typer.Option([], "--roi-floor"), actuals: Optional[Path] = typer.Option(None, "--actuals"),
             model: Optional[str] = typer.Option(None, "--model")) -> None:
    """Plan spend per channel and period within budget and rules; writes period, channel, spend, expected_revenue."""
    raise InputError("allocate is not implemented yet (issue D)")


@app.command("attribute")
def attribute(touchpoints: Path = typer.Option(..., "--touchpoints"), events: Path = typer.Option(..., "--events"),
              output: Path = typer.Option(..., "--output")) -> None:
    """Markov-chain multi-touch attribution beside last-click and first-click."""
    raise InputError("attribute is not implemented yet (issue D)")
