"""`omnidecide report`: what serves, each version's figures, lifecycle decisions, serving health, monitor results."""
from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

import omnidecide.cli.report  # noqa: F401  (registers `report`)
from omnidecide.cli.app import app
from omnidecide.serving.audit import DecisionLog
from omnidecide.store import registry

runner = CliRunner()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """Two churn versions (one promoted, one a 5% canary) and a decision log; the shared store is put back after."""
    monkeypatch.setattr(registry, "_loads", lambda name, tag: None)  # toy artefacts, not real models
    kept = {f: f.read_bytes() if f.exists() else None for f in (registry.home() / "monitor" / "latest.json",)}
    stages = registry._read_stages()
    tags = []
    for auc in (0.71, 0.74):
        tags.append(registry.save("churn", lambda folder: (folder / "w.json").write_text("{}"),
                                  metrics={"val_auc": auc, "val_ap": 0.5}, params={"horizon_days": 90},
                                  data_fingerprint=f"fp{auc}", extra={"data_end": "2026-06-30T12:00:00"}))
        time.sleep(0.01)
    registry.promote(tags[0], reason="test_report")
    registry.set_canary(tags[1], 0.05, reason="test_report")
    log = DecisionLog()
    for ms in (10.0, 20.0, 30.0):
        log.write("predict_churn", tags[0], "u1", {"risk_tier": "low"}, ms=ms)
    log.write("predict_churn", tags[1], "u2", {"risk_tier": "high"}, ms=40.0)
    log.error("predict_churn", tags[1], RuntimeError("boom"), ms=5.0)
    yield tags
    import bentoml

    for tag in tags:
        bentoml.models.delete(tag)
    registry._write_stages(stages)
    for f, data in kept.items():
        if data is None:
            f.unlink(missing_ok=True)
        else:
            f.write_bytes(data)


def test_report_names_versions_canary_share_and_health(store, tmp_path):
    production, canary = store
    out = tmp_path / "REPORT.md"
    res = runner.invoke(app, ["report", "--output", str(out), "--days", "7"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    churn = text[text.index("## churn"):text.index("## allocator")]
    assert f"- production: {production}" in churn and f"- canary: {canary} at 5% of traffic" in churn
    assert "val_auc=0.71" in churn and "val_auc=0.74" in churn and "fp0.74" in churn and "2026-06-30T12:00:00" in churn
    assert f"| {production} | 3 | 0 | 0.00% | 20 | 29 |" in churn  # requests, errors, error rate, p50, p95
    assert f"| {canary} | 2 | 1 | 50.00% | 40 | 40 |" in churn
    assert "| canary |" in churn and "reason" in churn and "test_report" in churn
    assert "No monitor run yet" in text


def test_report_renders_the_latest_monitor_run_to_stdout(store):
    (registry.home() / "monitor").mkdir(exist_ok=True)
    (registry.home() / "monitor" / "latest.json").write_text(json.dumps({"at": "2026-07-01T08:00:00+00:00", "models": {
        "churn": {"alerts": ["share_event.purchase moved +95%"], "actions": ["ramp canary 5% → 25%"],
                  "drift": [{"attribute": "share_event.purchase", "reference": 0.026, "current": 0.05, "change": 0.95,
                             "alert": True, "status": "compared"},
                            {"attribute": "share_channel.web", "reference": None, "current": 0.3, "change": None,
                             "alert": True, "status": "new"},
                            {"attribute": "share_event.view", "reference": 0.8, "current": 0.79, "change": -0.01,
                             "alert": False, "status": "compared"}],
                  "quality": {"metric": "auc", "production": {"auc": 0.72}}}}}))
    res = runner.invoke(app, ["report"])
    assert res.exit_code == 0, res.output
    churn = res.stdout[res.stdout.index("## churn"):res.stdout.index("## allocator")]
    assert "2026-07-01T08:00:00" in res.stdout
    assert "- alert: share_event.purchase moved +95%" in churn and "- action: ramp canary 5% → 25%" in churn
    assert "2 of 3 attributes" in churn and "| share_event.purchase | 0.026 | 0.05 | +95.0% |" in churn
    assert "| share_channel.web | — | 0.3 | new |" in churn and "- quality production: auc=0.72" in churn
    assert "Not monitored in the latest run." in res.stdout[res.stdout.index("## allocator"):]
    assert runner.invoke(app, ["report", "--days", "0"]).exit_code != 0
