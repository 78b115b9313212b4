"""A served recommender version's arrays are memory-mapped from one set of files per machine (store/mapped.py): the
same answers as loading the archive, the catalogue's arrays still writable, and a store that cannot hold the files
still serves."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from omnidecide.models.recommender import rules
from omnidecide.models.recommender.core import Recommender
from omnidecide.store import loader, mapped, registry


def _lists(rec: Recommender) -> list:
    users = [str(u) for u in rec.user_ids[:40]]
    return [[(r.item_id, r.score, r.reason) for r in rules.recommend(rec, u, 10)] for u in users]


def test_a_version_loads_mapped_read_only_with_the_archives_answers(trained):
    tag = trained["recommender"]
    folder = registry.path("recommender", tag)
    rec = loader.load("recommender", tag).model
    again = loader.load("recommender", tag).model  # a second worker: maps the files the first one wrote
    own = Recommender.load(folder)  # the archive itself, decompressed into this process
    index = json.loads((mapped.root() / folder.name / mapped.INDEX).read_text())
    assert index["stamp"]["source"] == str(folder) and len(index["files"]) > 10
    assert not rec.X.data.flags.writeable and not again.graph.d_item.flags.writeable  # mapped, shared pages
    assert rec.stock.flags.writeable and rec.item_cat.flags.writeable  # the live catalogue edits these in place
    assert np.array_equal(rec.X.indices, own.X.indices) and np.array_equal(rec.pop["global"], own.pop["global"])
    assert _lists(rec) == _lists(own) == _lists(again)


def test_stale_or_half_written_files_are_written_again(trained):
    tag = trained["recommender"]
    folder = registry.path("recommender", tag)
    loader.load("recommender", tag)
    where = mapped.root() / folder.name
    index = json.loads((where / mapped.INDEX).read_text())
    index["stamp"]["size"] += 1  # an archive that is not the one these files came from
    (where / mapped.INDEX).write_text(json.dumps(index))
    (where.with_name(where.name + ".tmp")).mkdir(exist_ok=True)  # a writer killed halfway
    gone = mapped.root() / "a-deleted-version"
    gone.mkdir(exist_ok=True)
    (gone / mapped.INDEX).write_text(json.dumps({"stamp": {"source": str(folder.parent / "no-such-version")}}))
    rec = loader.load("recommender", tag).model
    fresh = json.loads((where / mapped.INDEX).read_text())
    assert fresh["stamp"]["size"] == (folder / mapped.ARCHIVE).stat().st_size
    assert not where.with_name(where.name + ".tmp").exists() and not gone.exists()
    assert _lists(rec) == _lists(Recommender.load(folder))


def test_a_store_that_cannot_hold_the_files_still_serves(trained, tmp_path, monkeypatch):
    tag = trained["recommender"]
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(mapped, "root", lambda: tmp_path / "a-file" / "mapped")  # mkdir fails: not a directory
    with pytest.warns(RuntimeWarning, match="loads its own copy"):
        rec = loader.load("recommender", tag).model
    assert rec.X.data.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _lists(rec) == _lists(Recommender.load(registry.path("recommender", tag)))
