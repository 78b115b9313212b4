"""Model lifecycle verbs: `models list|show|promote|rollback|canary`, `train all`, `serve`, `retrain`, `monitor`, `report`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from omnidecide.cli.app import app, console, models_app, train_app
from omnidecide.models.errors import InputError


@models_app.command("list")
def list_models(name: Optional[str] = typer.Argument(None, help="recommender, churn or allocator")) -> None:
    """Every stored version, newest first, with its stage and headline metrics."""
    from omnidecide.store import registry

    rows = registry.versions(name)
    table = Table("tag", "created", "stage", "metrics")
    for r in rows:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in list(r["metrics"].items())[:4])
        table.add_row(r["tag"], r["created"], r["stage"], metrics)
    console.print(table if rows else f"no versions in {registry.home()}")


@models_app.command("show")
def show(tag: str = typer.Argument(..., help="name:version, or a name for the serving version")) -> None:
    """Metadata of one version: metrics, params, data fingerprint, stage."""
    from omnidecide.store import registry

    name = tag.split(":")[0]
    model = registry.get(name, tag if ":" in tag else None)
    print(json.dumps({"tag": str(model.tag), "path": model.path, "stages": registry.stages(name),
                      **dict(model.info.metadata)}, indent=2, default=str))


@models_app.command("promote")
def promote(tag: str = typer.Argument(..., help="name:version to serve"),
            reason: str = typer.Option("manual", "--reason")) -> None:
    """Serve this version; the one it replaces is kept for rollback."""
    from omnidecide.store import registry

    st = registry.promote(tag, reason=reason)
    console.print(f"production: {st['production']}")


@models_app.command("rollback")
def rollback(name: str = typer.Argument(..., help="recommender, churn or allocator"),
             reason: str = typer.Option("manual", "--reason")) -> None:
    """Serve the previously promoted version again."""
    from omnidecide.store import registry

    st = registry.rollback(name, reason=reason)
    console.print(f"production: {st['production']}")


@models_app.command("canary")
def canary(tag: str = typer.Argument(..., help="name:version to try"),
           share: float = typer.Option(0.05, "--share", help="Share of traffic, 0..1 (default 5%)")) -> None:
    """Send a share of traffic to a version beside production."""
    from omnidecide.store import registry

    st = registry.set_canary(tag, share)
    console.print(f"canary: {st['canary']}")


@train_app.command("all")
def train_all(data: Path = typer.Option(..., "--data", help="Folder of canonical files, e.g. from `data synth`")) -> None:
    """Train every model whose input is in the folder; prints each tag."""
    from omnidecide.training import allocator, churn, recommender

    if not data.is_dir():
        raise InputError(f"--data {data}: not a folder")
    from omnidecide.store.io import canonical_file

    events = canonical_file(data, "events")  # events.csv, or events.parquet (the scale world)
    optional = lambda t: canonical_file(data, t) if canonical_file(data, t).exists() else None  # noqa: E731
    trained = 0
    if events.exists():
        print(recommender.train(events, items=optional("items"), users=optional("users")))
        print(churn.train(events))
        trained += 2
    if (data / "marketing_mix.csv").exists():
        print(allocator.train(data / "marketing_mix.csv"))
        trained += 1
    if not trained:
        raise InputError(f"--data {data}: no events.csv or marketing_mix.csv to train on")


@app.command("serve")
def serve(port: int = typer.Option(3000, "--port"), host: str = typer.Option("127.0.0.1", "--host"),
          workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (they share the online store, "
                                      "catalogue and stages through the database)")) -> None:
    """Serve every model over HTTP (BentoML): promoted versions, else the latest. Beyond 127.0.0.1 it needs an API
    key (`omnidecide keys create`)."""
    from omnidecide.serving import auth, watchdog
    from omnidecide.store import registry

    try:
        auth.refuse_open_public(host)
    except RuntimeError as e:
        raise InputError(str(e)) from e
    holder = watchdog.port_holder(host, port)
    if holder is not None:
        raise InputError(f"--port {port}: {host}:{port} is already held by {holder}; stop it (a server left from an "
                         f"earlier run?) or choose another --port")
    options = " ".join(x for x in (os.environ.get("BENTOML_CONFIG_OPTIONS", ""), f"services.omnidecide.workers={workers}") if x)
    # the workers stop themselves when this process (the BentoML arbiter after exec) dies, even by SIGKILL
    env = {**os.environ, "BENTOML_HOME": str(registry.home()), "BENTOML_CONFIG_OPTIONS": options, watchdog.ENV: "1"}
    # one worker per core: a request's small matrix products on several BLAS/OpenMP threads only spin-wait
    env.update({v: os.environ.get(v, "1") for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "bentoml", "serve", "omnidecide.serving.service:OmniDecide", "--port", str(port), "--host", host]
    os.chdir(root)
    os.execve(sys.executable, cmd, env)  # become the server: signals (Ctrl-C, SIGTERM) reach it directly


@app.command("purge")
def purge() -> None:
    """Apply the retention rules now (the service also does, hourly): decision-log lines and online-store events
    received longer ago than OMNIDECIDE_RETENTION_DAYS (default 90), events beyond each user's newest 200, old
    idempotency keys."""
    from omnidecide.serving import retention
    from omnidecide.serving.audit import DecisionLog
    from omnidecide.serving.online_store import OnlineStore

    store = OnlineStore()
    removed = retention.purge(store, DecisionLog(store.db))
    console.print(f"purged from {store.db.describe()}: {removed['events']} events, "
                  f"{removed['decision_lines']} decision-log lines", highlight=False)


MODEL_HELP = "recommender, churn or allocator (repeatable; default: every model the folder feeds)"


def _fresh_data(data: Path, names: Optional[list[str]]) -> dict:
    from omnidecide.store import registry
    from omnidecide.training import backtest

    found = backtest.from_folder(data)
    for n in names or []:
        if n not in registry.MODEL_NAMES:
            raise InputError(f"--model {n}: expected one of {', '.join(registry.MODEL_NAMES)}")
        if n not in found:
            raise InputError(f"--model {n}: --data {data} has no {'marketing_mix.csv' if n == 'allocator' else 'events.csv'}")
    if not names:  # a model left out because its file is missing is said so, not skipped in silence
        for n in (n for n in registry.MODEL_NAMES if n not in found):
            console.print(f"{n}: not checked: --data {data} has no "
                          f"{'marketing_mix.csv' if n == 'allocator' else 'events.csv'}", highlight=False)
    return {n: d for n, d in found.items() if not names or n in names}


def _fmt(x: object) -> str:
    return f"{x:.4f}" if isinstance(x, float) else "—" if x is None else str(x)


@app.command("retrain")
def retrain(data: Path = typer.Option(..., "--data", help="Folder of fresh canonical files (events.csv, marketing_mix.csv, ...)"),
            model: Optional[list[str]] = typer.Option(None, "--model", help=MODEL_HELP),
            promote: bool = typer.Option(False, "--promote", help="Promote a version that holds up at once (default: 5% canary)"),
            share: float = typer.Option(0.05, "--share", help="Canary traffic share of a version that holds up"),
            tolerance: float = typer.Option(0.01, "--tolerance",
                                            help="Release a retrained version up to this much worse than production on "
                                                 "the primary figure (it has the fresher data)"),
            seed: int = typer.Option(0, "--seed")) -> None:
    """Retrain on fresh data, judge it beside production on the newest window, release it as a canary if it holds up."""
    from omnidecide.training import lifecycle

    if not 0 < share <= 1:
        raise InputError(f"--share {share}: must be in (0, 1]")
    for name, d in _fresh_data(data, model).items():
        o = lifecycle.retrain(d, promote=promote, share=share, tolerance=tolerance, seed=seed)
        old = o.production_metrics[o.metric] if o.production_metrics else None
        decision = {"canary": f"canary {o.tag} at {share:.0%}", "promoted": f"promoted {o.tag}"}.get(o.decision, o.decision)
        change = "" if o.change is None else f" ({o.change:+.1%})"
        if not o.window:  # nothing was judged
            console.print(f"[bold]{name}[/] -> {decision}", highlight=False)
        else:
            console.print(f"[bold]{name}[/] window {o.window}: {o.metric} production {_fmt(old)}, retrained "
                          f"{_fmt(o.challenger_metrics[o.metric])}{change} -> {decision}", highlight=False)
        for note in o.notes:
            console.print(f"  note: {note}", highlight=False)


@app.command("monitor")
def monitor(data: Path = typer.Option(..., "--data", help="Folder of recent canonical files"),
            model: Optional[list[str]] = typer.Option(None, "--model", help=MODEL_HELP),
            dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be done to canaries; change nothing")) -> None:
    """Drift, quality since release, churn scores, canary health, export alarms; ramps up or ends canaries. Exits 1
    when anything alerts."""
    from omnidecide.serving.audit import DecisionLog
    from omnidecide.training import lifecycle

    log = DecisionLog()
    results = {}
    for name, d in _fresh_data(data, model).items():
        since = lifecycle.canary_since(name)
        health = log.health(since) if since else {}
        results[name] = r = lifecycle.monitor(d, health, act=not dry_run)
        q = r["quality"]
        prod = q.get("production")
        figure = _fmt(prod.get(q["metric"])) if isinstance(prod, dict) else prod
        if "production" in r:
            console.print(f"[bold]{name}[/] {r['production']}: {q['metric']} {figure}"
                          + (f" ({q['change_since_release']:+.1%} since release)" if "change_since_release" in q else ""),
                          highlight=False)
        else:
            console.print(f"[bold]{name}[/]: nothing served", highlight=False)
        for a in r["alerts"]:
            console.print(f"  [red]alert[/] {a}", highlight=False)
        for a in r["actions"]:
            console.print(f"  action: {a}", highlight=False)
    stale = lifecycle.stale_scores_alert() if "churn" in results else None
    if stale:
        results["churn"]["alerts"].append(stale)
        console.print(f"  [red]alert[/] {stale}", highlight=False)
    alarms = lifecycle.export_alarms(lifecycle.last_run())
    for a in alarms:
        console.print(f"  [red]export alarm[/] {a}", highlight=False)
    path = lifecycle.save_report(results, alarms)
    console.print(f"written: {path}", highlight=False)
    if alarms or any(r["alerts"] for r in results.values()):
        raise typer.Exit(1)
