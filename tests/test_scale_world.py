"""The scale world (`data synth --format parquet`): canonical Parquet files that validate clean, the same for a seed,
with the documented shape (heavy-tailed items, repeat purchases, channels, stores)."""
from __future__ import annotations

import hashlib

import pandas as pd
from typer.testing import CliRunner

from omnidecide.cli.app import app
import omnidecide.cli.data  # noqa: F401  (registers the commands)
from omnidecide.store.io import load, load_folder


def test_synth_parquet_writes_clean_canonical_files(tmp_path):
    res = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "w"), "--users", "3000", "--items", "2000",
                                   "--format", "parquet", "--seed", "3"])
    assert res.exit_code == 0, res.output
    tables = load_folder(tmp_path / "w")
    assert set(tables) == {"events", "items", "users", "store_stock"}
    assert all(t.n_rejected == 0 for t in tables.values()), {k: t.counts for k, t in tables.items()}
    ev = tables["events"].data
    assert 30 * 3000 < len(ev) < 70 * 3000  # ~50 events per customer
    assert set(ev["event"]) == {"view", "click", "cart", "purchase"}
    assert ev["channel"].nunique() >= 6 and ev.loc[ev["channel"] == "store", "store_id"].notna().all()
    share = ev["item_id"].value_counts(normalize=True)
    assert share.head(len(share) // 100).sum() > 0.15  # the top 1% of items: over 15x their uniform share
    buys = ev[ev["event"] == "purchase"].groupby(["user_id", "item_id"]).size()
    assert (buys > 1).mean() > 0.05  # repeat purchases
    assert (ev.loc[ev["event"] == "purchase", "amount"] > 0).all()


def test_same_seed_same_files(tmp_path):
    from omnidecide.training import scale_world

    digests = []
    for n in (1, 2):
        scale_world.generate(tmp_path / str(n), n_users=500, n_items=300, seed=1, block=200)
        digests.append(hashlib.sha256(pd.util.hash_pandas_object(load(tmp_path / str(n) / "events.parquet", "events")
                                                                 .data).to_numpy().tobytes()).hexdigest())
    assert digests[0] == digests[1]
