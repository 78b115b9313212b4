"""`omnidecide train recommender` and `omnidecide recommend` (issue B)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import typer

from omnidecide.cli.app import app, audit_export, console, train_app
from omnidecide.models.errors import InputError
from omnidecide.models.recommender.context import MIN_SEGMENT_USERS, SEGMENTS


def read_user_ids(path: Path) -> list[str]:
    """The ids a --users file lists, in order: one id a line (an optional `user_id` header), or a CSV with a `user_id`
    column (its other columns ignored). Any other file is an InputError naming it: each line of a CSV read as an id
    would ask for users called 'name,user_id,city'."""
    from omnidecide.store.io import read_flag_csv

    flag = f"--users {path}"
    df = read_flag_csv(path, "--users", header=None, dtype=str, keep_default_na=False)
    df = df.apply(lambda c: c.str.strip())
    df = df[(df != "").any(axis=1)]  # lines of blanks only
    header = [str(h).lower() for h in df.iloc[0]] if len(df) else []
    if header.count("user_id") > 1:  # which one? reading the first served its ids and dropped the other's
        raise InputError(f"{flag}: the header names user_id {header.count('user_id')} times; keep one")
    sep = next((c for c in (";", "\t", "|")
                if len(header) == 1 and c in header[0] and "user_id" in header[0].split(c)), None)
    if sep:  # else the header line itself ("name;user_id") and each whole line were served as user ids
        raise InputError(f"{flag}: the header {df.iloc[0, 0]!r} looks {sep!r}-separated; write the file with commas, "
                         "or one user id a line")
    if "user_id" in header:
        ids = df.iloc[1:, header.index("user_id")]
    elif df.shape[1] == 1:
        ids = df.iloc[:, 0]
    else:
        raise InputError(f"{flag}: {df.shape[1]} columns and none is named user_id; give one user id a line, or a CSV "
                         "with a user_id column")
    blank = [str(i) for i, v in enumerate(ids, start=1) if v == ""]
    if blank:
        rows = ", ".join(blank[:10]) + (f" and {len(blank) - 10} more" if len(blank) > 10 else "")
        raise InputError(f"{flag}: user_id is empty in data row(s) {rows} (1 = first data row)")
    if ids.empty:  # an empty list would write an empty file and exit 0, as if every user had been served
        raise InputError(f"{flag}: no user ids in the file (one a line, an optional user_id header)")
    return list(ids)


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
def recommend(users: Optional[Path] = typer.Option(None, "--users", help="File of user ids: one a line (optional "
                                                        "user_id header), or a CSV with a user_id column"),
              all_users: bool = typer.Option(False, "--all-users", help="Every user the model was trained on"),
              k: int = typer.Option(20, "--k"),
              output: Path = typer.Option(..., "--output"), model: Optional[str] = typer.Option(None, "--model"),
              store_id: Optional[str] = typer.Option(None, "--store-id"), channel: Optional[str] = typer.Option(None, "--channel"),
              segment: Optional[str] = typer.Option(None, "--segment", help="COLUMN=VALUE, e.g. member_level=gold: "
                                                    "users unknown to the model get this segment's popular items"),
              workers: int = typer.Option(0, "--workers", min=0, help="0: score in this process; N: on Ray with N "
                                          "workers (a local Ray started for the job unless --ray-address)"),
              ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to run on, e.g. auto "
                                                        "or ray://head:10001 (README: Scale-out)")) -> None:
    """Batch top-K for each listed user id; writes user_id, rank, item_id, score, reason."""
    from omnidecide.serving import batch
    from omnidecide.serving.recommender import RecommenderRuntime
    from omnidecide.training import progress

    if k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    if segment is not None and "=" not in segment:
        raise InputError(f"--segment {segment!r}: expected COLUMN=VALUE, e.g. member_level=gold")
    if segment is not None and segment.split("=", 1)[0].strip() not in SEGMENTS:  # was ignored: overall popularity
        raise InputError(f"--segment {segment!r}: unknown column {segment.split('=', 1)[0].strip()!r}; one of "
                         f"{', '.join(SEGMENTS)} (users.csv)")
    if (users is None) == (not all_users):
        raise InputError("name the users: --users FILE or --all-users (not both)")
    ids: list[str] = []
    if users is not None:
        listed = read_user_ids(users)
        ids = list(dict.fromkeys(listed))  # a user listed twice gets one block of rows
        if len(ids) < len(listed):
            console.print(f"{users}: {len(listed) - len(ids)} duplicate user id(s) listed once", highlight=False)
    on_ray = bool(workers or ray_address)
    if on_ray:  # the workers load the version; this process only hands out the ids and writes the rows
        tag, trained, stores = batch.version_users(model)
    else:
        rt = RecommenderRuntime(model)
        tag, trained, stores = rt.tag, [str(u) for u in rt.rec.user_ids], set(rt.store_stock)
    if all_users:
        ids = trained
    if segment is not None and not on_ray and f"segment:{'='.join(x.strip() for x in segment.split('=', 1))}" \
            not in rt.rec.pop:
        console.print(f"warning: {tag} has no popular items for {segment.strip()} (fewer than {MIN_SEGMENT_USERS} "
                      "customers of its users file have it); users unknown to the model get the overall ones",
                      highlight=False)
    if store_id and store_id not in stores:
        console.print(f"warning: no store_stock rows for store {store_id!r}; only global stock applies",
                      highlight=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    n_fallback = n_rows = 0
    with open(output, "w", newline="", encoding="utf-8") as f, progress.task("recommend", len(ids)):
        w = csv.writer(f)
        w.writerow(batch.REC_COLUMNS)
        if on_ray:
            parts = batch.recommend_on_ray(tag, ids, k, store_id=store_id, channel=channel, segment=segment,
                                           address=ray_address, workers=workers or 2)
        else:
            parts = (batch.recommend_rows(rt, ids[s: s + batch.SHARD_USERS], k, store_id, channel, segment,
                                          on_user=progress.step) for s in range(0, len(ids), batch.SHARD_USERS))
        for rows, fallbacks in parts:
            w.writerows(rows.itertuples(index=False, name=None))
            n_fallback += fallbacks
            n_rows += len(rows)
    console.print(f"wrote {output}: {len(ids)} users ({n_fallback} cold-start fallback), model {tag}", highlight=False)
    audit_export("recommend", output, n_rows, len(ids), tag)
