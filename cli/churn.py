"""`omnidecide train churn` and `omnidecide predict churn` (issue C)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.app import predict_app, train_app
from models.errors import InputError


@train_app.command("churn")
def train_churn(events: Path = typer.Option(..., "--events"), horizon_days: int = typer.Option(90, "--horizon-days"),
                as_of: Optional[str] = typer.Option(None, "--as-of")) -> None:
    """Train the LSTM churn predictor; saves a version with metrics; prints the tag."""
    raise InputError("train churn is not implemented yet (issue C)")


@predict_app.command("churn")
def predict_churn(events: Path = typer.Option(..., "--events"), as_of: str = typer.Option(..., "--as-of"),
                  horizon_days: int = typer.Option(90, "--horizon-days"), output: Path = typer.Option(..., "--output"),
                  model: Optional[str] = typer.Option(None, "--model")) -> None:
    """One row per customer: user_id, churn_probability, risk_tier, segment, expected_spend, reason."""
    raise InputError("predict churn is not implemented yet (issue C)")
