"""Reports with plots: every version carries a self-contained report.html from training, and `omnidecide report
--html` writes one file with every model's plots and lifecycle."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import omnidecide.cli.report  # noqa: F401  (registers `report`)
from omnidecide.cli.app import app

TITLES = {
    "recommender": ["Recall and NDCG at k on the holdout", "Coverage and long tail",
                    "Calibration of the purchase probability"],
    "churn": ["Calibration", "Scores by risk tier", "Lift chart", "RFM segment sizes"],
    "allocator": ["Fitted vs actual revenue", "Response curves", "Plan by week and channel", "Marginal ROI at the plan"],
}
LIFECYCLE = ["Drift over time", "Canary health", "Decision history"]


def _images(text: str) -> list[str]:
    return re.findall(r"<img [^>]*src='([^']*)'", text)


def _self_contained(text: str) -> None:
    """No fetch of anything: every image inline, no external script, stylesheet or link to load."""
    assert not re.search(r"<(script|link)\b", text)
    assert all(src.startswith("data:image/png;base64,") for src in _images(text))


def _drawn(text: str, title: str) -> bool:
    """The figure titled `title` carries an image (not a 'not drawn' note)."""
    m = re.search(rf"<figure><h3>{re.escape(title)}</h3>(<img|<p class='missing'>)", text)
    assert m, f"no figure {title!r}"
    return m.group(1) == "<img"


def test_every_version_carries_its_report(trained):
    from omnidecide.store import registry

    for name, tag in trained.items():
        text = (Path(registry.get(name, tag).path) / "report.html").read_text()
        _self_contained(text)
        for title in TITLES[name]:
            assert _drawn(text, title), (name, title)
        assert len(_images(text)) >= len(TITLES[name])


def test_report_html_has_every_plot(trained, tmp_path, own_stages):
    from omnidecide.store import registry

    for tag in trained.values():
        registry.promote(tag, reason="test_reports_html")
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", "--html", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    _self_contained(text)
    for name, titles in TITLES.items():
        assert f"<h2>{trained[name]}</h2>" in text
        for title in titles:
            assert _drawn(text, title), (name, title)
    assert text.count("<h3>Decision history</h3>") == 3  # each model's lifecycle (promotions were just logged)
    assert _drawn(text, "Decision history")
    for title in LIFECYCLE:
        assert f"<h3>{title}</h3>" in text


def test_drift_over_time_from_monitor_runs(trained, own_stages):
    """Two monitor runs' drift rows become a drawn line plot (the band is the monitor's ±15%)."""
    import json

    from omnidecide.store import registry
    from omnidecide.store.reports import lifecycle

    d = registry.home() / "monitor"
    d.mkdir(parents=True, exist_ok=True)
    rows = lambda c: [{"attribute": "share_channel.app", "reference": 0.5, "current": 0.5 * (1 + c), "change": c,  # noqa: E731
                       "alert": abs(c) > 0.15, "status": "compared"}]
    with open(d / "history.jsonl", "a") as f:
        for at, c in (("2026-07-01T00:00:00+00:00", 0.02), ("2026-07-08T00:00:00+00:00", 0.3)):
            f.write(json.dumps({"at": at, "models": {"churn": {"drift": rows(c)}}}) + "\n")
    figs = {f.title: f for f in lifecycle.figures("churn")}
    assert figs["Drift over time"].png and "2 monitor runs" in figs["Drift over time"].caption
    assert figs["Drift over time"].missing is None


def test_a_version_without_figure_data_says_so():
    """A version trained before reports were kept: the report names what is missing and why instead of failing."""
    from omnidecide.store.reports import model_figures

    for name in ("recommender", "churn"):
        figs = model_figures(name, {"metrics": {}})
        assert figs and all(f.png is None and "trained before reports were kept" in f.missing for f in figs)
    figs = model_figures("allocator", {}, Path("/nonexistent"))
    assert figs[0].missing and "does not load" in figs[0].missing


def test_html_flag_reports_an_unwritable_path(trained, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(app, ["report", "--html", str(blocker / "report.html")])
    assert res.exit_code != 0 and "--html" in str(res.exception)


def test_reliability_curve_and_lift():
    from omnidecide.models.metrics import expected_calibration_error, lift_by_decile, reliability_curve

    rng = np.random.default_rng(0)
    p = rng.uniform(size=5000)
    y = rng.uniform(size=5000) < p  # calibrated by construction
    c = reliability_curve(y, p)
    assert sum(c["count"]) == 5000 and len(c["mean_prob"]) == 10
    assert np.allclose(c["mean_prob"], c["observed_rate"], atol=0.05)
    ece = sum(n / 5000 * abs(a - b) for n, a, b in zip(c["count"], c["mean_prob"], c["observed_rate"]))
    assert ece == pytest.approx(expected_calibration_error(y, p))
    lift = lift_by_decile(y, p)
    assert lift["group"] == list(range(1, 11)) and lift["lift"][0] > 1.6 > 0.4 > lift["lift"][-1]
