"""The `omnidecide` command tree. Each verb's module adds its commands to these apps."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="omnidecide: recommendations, churn, budget allocation and ad values for omnichannel retail.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch, synthesise and validate canonical data files.")
train_app = typer.Typer(no_args_is_help=True, help="Train a model and save a new version in the model store.")
predict_app = typer.Typer(no_args_is_help=True, help="Batch predictions from a stored model.")
models_app = typer.Typer(no_args_is_help=True, help="List, inspect, promote, canary and roll back model versions.")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(predict_app, name="predict")
app.add_typer(models_app, name="models")

console = Console(stderr=True)


def audit_export(command: str, output: Path, rows: int, customers: int, model: str | None) -> None:
    """Log a customer-level export (who, when, what); print the alarms it raised (odd hours, unusual size)."""
    from omnidecide.training import exports

    for alarm in exports.record(command, output, rows, customers, model):
        console.print(f"[yellow]audit alarm:[/] {alarm} (logged in {exports.LOG_NAME})", highlight=False)
