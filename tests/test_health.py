"""Serving health in the decision log: each answer's `ms`, an error line per failed model call, `health` per version."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from omnidecide.serving.audit import DecisionLog
from omnidecide.store.db import Database


@pytest.fixture
def log(tmp_path) -> DecisionLog:
    """A decision log in its own embedded database."""
    return DecisionLog(Database(f"sqlite:///{tmp_path / 'state.sqlite3'}"))


def test_health_counts_requests_errors_and_latency_per_version(log):
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text)

    a, b = "recommender:a", "churn:b"
    log.write_many("recommend", a, [(None, {})], ms=999.0, at=at("2026-01-01T23:00:00+00:00"))
    log.write_many("recommend", a, [(None, {})], ms=999.0, at=at("2026-01-02T11:00:00+00:00"))  # before `since`
    for ms in (10, 20, 30):
        log.write_many("recommend", a, [(None, {})], ms=ms, at=at("2026-01-02T12:00:00+00:00"))
    log.write_many("recommend", a, [(None, {"error": "RuntimeError: x"})], ms=500, at=at("2026-01-02T12:30:00+00:00"))
    log.write_many("recommend", a, [(None, {})], at=at("2026-01-02T13:00:00+00:00"))  # an older line: no ms
    log.write_many("predict_churn", b, [(s, {}) for s in "xyz"], ms=50.0,  # one request about three customers
                   at=at("2026-01-02T14:00:00+00:00"))
    log.write_many("events", None, [(None, {})], ms=1.0, at=at("2026-01-02T15:00:00+00:00"))  # no model: not counted
    log.write_many("predict_churn", b, [(None, {})], ms=70.0, at=at("2026-01-03T01:00:00"))  # naive = UTC

    h = log.health(datetime(2026, 1, 2, 12, tzinfo=timezone.utc))
    assert set(h) == {a, b}
    assert h[a]["requests"] == 5 and h[a]["errors"] == 1 and h[a]["error_rate"] == pytest.approx(0.2)
    assert h[a]["p50_ms"] == pytest.approx(20.0) and h[a]["p95_ms"] == pytest.approx(29.0)  # answered requests only
    assert h[b] == {"requests": 2, "errors": 0, "error_rate": 0.0, "p50_ms": 60.0, "p95_ms": pytest.approx(69.0)}
    assert log.health(datetime(2026, 2, 1, tzinfo=timezone.utc)) == {}


def test_batch_lines_share_one_request_id(log):
    log.write_many("predict_churn", "churn:b", [("x", {"risk_tier": "high"}), ("y", {"risk_tier": "low"})], ms=12.5)
    log.write("recommend", "recommender:a", "x", {"items": []}, ms=3.25)
    lines = log.read()
    assert lines[0]["batch"] == lines[1]["batch"] and "batch" not in lines[2]
    assert [x["ms"] for x in lines] == [12.5, 12.5, 3.25]
    assert {t: h["requests"] for t, h in log.health(datetime(2000, 1, 1)).items()} == {"churn:b": 1, "recommender:a": 1}


class _Flaky:
    """A version that fails with a bug (not bad input) on every call."""

    tag = "recommender:flaky"

    def recommend(self, request):
        raise RuntimeError("index out of step with the catalogue")


def test_a_failing_model_call_is_logged_with_its_tag_then_raised(log):
    from omnidecide.serving.routing import Versions
    from omnidecide.serving.service import _call

    versions = Versions("recommender", lambda tag: _Flaky())
    with pytest.raises(RuntimeError, match="out of step"):
        _call(versions, "u1", lambda r: r.recommend("u1"), log, "recommend")
    [line] = log.read()
    assert (line["endpoint"], line["model"]) == ("recommend", _Flaky.tag) and line["ms"] >= 0
    assert line["error"] == "RuntimeError: index out of step with the catalogue"
    assert "u1" not in json.dumps(line)  # an error line names the version, not the customer
    assert _call(versions, "u1", lambda r: r.tag, log, "recommend")[0] == _Flaky.tag  # answers: (result, ms)
