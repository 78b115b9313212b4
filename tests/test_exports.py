"""Export audit: every customer-level export is logged; odd hours and unusual sizes raise alarms."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from omnidecide.models.errors import InputError
from omnidecide.training import exports, lifecycle


@pytest.fixture()
def audit_file(tmp_path, monkeypatch):
    f = tmp_path / "exports.jsonl"
    monkeypatch.setattr(exports, "_file", lambda: f)
    return f


def test_an_export_inside_the_quiet_hours_raises_an_alarm(audit_file, monkeypatch, tmp_path):
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    hour = now.astimezone().hour
    monkeypatch.setenv("OMNIDECIDE_QUIET_HOURS", f"{hour}-{(hour + 1) % 24}")
    alarms = exports.record("predict churn", tmp_path / "churn.csv", 500, 500, "churn:abc", now=now)
    assert len(alarms) == 1 and "quiet hours" in alarms[0]
    monkeypatch.setenv("OMNIDECIDE_QUIET_HOURS", f"{(hour + 2) % 24}-{(hour + 4) % 24}")
    assert exports.record("predict churn", tmp_path / "churn.csv", 500, 500, "churn:abc", now=now) == []
    line = exports.read()[0]
    assert line["command"] == "predict churn" and line["rows"] == 500 and line["user"] and line["alarms"] == alarms
    monkeypatch.setenv("OMNIDECIDE_QUIET_HOURS", "late")
    with pytest.raises(InputError, match="OMNIDECIDE_QUIET_HOURS"):
        exports.record("recommend", tmp_path / "r.csv", 1, 1, None, now=now)


def test_an_export_far_larger_than_usual_raises_an_alarm(audit_file, monkeypatch, tmp_path):
    monkeypatch.setenv("OMNIDECIDE_QUIET_HOURS", "0-0")  # empty window: no odd-hours alarm
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    for _ in range(5):
        assert exports.record("recommend", tmp_path / "r.csv", 2000, 100, "recommender:x", now=now) == []
    assert exports.record("recommend", tmp_path / "r.csv", 5000, 250, "recommender:x", now=now) == []  # 2.5x
    alarms = exports.record("recommend", tmp_path / "r.csv", 60000, 3000, "recommender:x", now=now + timedelta(hours=1))
    assert len(alarms) == 1 and "median" in alarms[0]
    # the monitor repeats the alarms raised since its last run, and only those
    assert len(lifecycle.export_alarms(now + timedelta(minutes=30))) == 1
    assert lifecycle.export_alarms(now + timedelta(hours=2)) == []
