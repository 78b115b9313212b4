"""`omnidecide train recommender` and `omnidecide recommend` (issue B)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import typer

from omnidecide.cli.app import app, audit_export, console, train_app
from omnidecide.models.errors import InputError


@train_app.command("recommender")
def train_recommender(events: Path = typer.Option(..., "--events"), items: Optional[Path] = typer.Option(None, "--items"),
                      users: Optional[Path] = typer.Option(None, "--users")) -> None:
    """Validate, train the graph-filter recommender (GF-CF family), evaluate on a holdout, save a version; prints the tag."""
    from omnidecide.training import recommender as training
    from omnidecide.store import registry

    tag = training.train(events, items, users)
    m = registry.get("recommender", tag).info.metadata.get("metrics", {})
    shown = {k: round(v, 4) for k, v in m.items() if k.startswith(("holdout_recall", "holdout_ndcg", "popularity_recall",
                                                                    "buy_again_recall"))}
    console.print(f"holdout: {shown}", highlight=False)
    print(tag)


@app.command("recommend")
def recommend(users: Path = typer.Option(..., "--users"), k: int = typer.Option(20, "--k"),
              output: Path = typer.Option(..., "--output"), model: Optional[str] = typer.Option(None, "--model"),
              store_id: Optional[str] = typer.Option(None, "--store-id"), channel: Optional[str] = typer.Option(None, "--channel"),
              segment: Optional[str] = typer.Option(None, "--segment", help="COLUMN=VALUE, e.g. member_level=gold: "
                                                    "users unknown to the model get this segment's popular items")) -> None:
    """Batch top-K for each listed user id; writes user_id, rank, item_id, score, reason."""
    from omnidecide.serving.recommender import RecommendRequest, RecommenderRuntime
    from omnidecide.training import progress

    if k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    if segment is not None and "=" not in segment:
        raise InputError(f"--segment {segment!r}: expected COLUMN=VALUE, e.g. member_level=gold")
    if not users.exists():
        raise InputError(f"{users}: no such file")
    listed = [line.strip() for line in users.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if listed and listed[0].lower() == "user_id":
        listed = listed[1:]
    ids = list(dict.fromkeys(listed))  # a user listed twice gets one block of rows
    if len(ids) < len(listed):
        console.print(f"{users}: {len(listed) - len(ids)} duplicate user id(s) listed once", highlight=False)
    rt = RecommenderRuntime(model)
    if store_id and store_id not in rt.store_stock:
        console.print(f"warning: no store_stock rows for store {store_id!r}; only global stock applies", highlight=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    n_fallback = n_rows = 0
    with open(output, "w", newline="", encoding="utf-8") as f, progress.task("recommend", len(ids)):
        w = csv.writer(f)
        w.writerow(["user_id", "rank", "item_id", "score", "reason"])
        for uid in ids:
            progress.step(uid)
            resp = rt.recommend(RecommendRequest(user_id=uid, k=k, store_id=store_id, channel=channel, segment=segment))
            n_fallback += resp.fallback
            for it in resp.items:
                w.writerow([uid, it.rank, it.item_id, f"{it.score:.6g}", it.reason])
            n_rows += len(resp.items)
    console.print(f"wrote {output}: {len(ids)} users ({n_fallback} cold-start fallback), model {rt.tag}", highlight=False)
    audit_export("recommend", output, n_rows, len(ids), rt.tag)

