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


def test_workers_map_the_codes_and_the_tifu_pool_written_with_the_version(trained, tmp_path, monkeypatch):
    """What every worker derived alike from a version (the 8-bit codes its index search walks, TIFU's items x pool
    matrix) is written once with its mapped arrays and read in place: no private copy, the same answers."""
    import faiss

    from omnidecide.models.recommender import retrieval, shared
    from omnidecide.models.recommender.core import SHARED

    monkeypatch.setattr(retrieval, "MIN_ITEMS", 100)  # the test world's catalogue through the faiss path
    monkeypatch.setattr(retrieval, "N_ANN", 40)
    folder = tmp_path / "version-with-index"
    folder.mkdir()
    Recommender.load(registry.path("recommender", trained["recommender"])).save(folder)  # now with items.faiss
    arrays = mapped.arrays(folder)
    index = json.loads((mapped.root() / folder.name / mapped.INDEX).read_text())
    assert index["stamp"]["format"] == shared.FORMAT
    rec, own = Recommender.load(folder, arrays), Recommender.load(folder)
    assert rec.retrieval is not None and rec.tifu is not None
    codes = arrays[SHARED + "codes"]
    assert isinstance(codes.base, np.memmap) and not codes.flags.writeable  # a view of the mapped file
    walked = faiss.downcast_index(rec.retrieval.items.searched.storage)
    in_faiss = faiss.rev_swig_ptr(walked.codes.data(), walked.ntotal * walked.code_size)
    assert np.shares_memory(in_faiss, codes)  # the walk reads the mapped file's pages
    _, _, by_item = rec.tifu._by_item()
    assert np.shares_memory(by_item.indices, arrays[SHARED + "tifu_pool_indices"])
    own_by_item = own.tifu._by_item()[2]
    assert (by_item != own_by_item).nnz == 0 and np.array_equal(rec.tifu._by_item()[1], own.tifu._by_item()[1])
    assert _lists(rec) == _lists(own)
