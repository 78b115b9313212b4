"""Churn features: no leakage across as-of, item-less purchase logs, labels, variable lengths, masking."""
import numpy as np
import pandas as pd
import pytest
import torch

from omnidecide.models.churn import features as F
from omnidecide.models.churn.net import ChurnNet
from omnidecide.models.errors import InputError
from omnidecide.models.schema import EVENTS, validate


def purchase_log() -> pd.DataFrame:
    """An item-less order log (user, date, quantity, amount), validated like any canonical file."""
    rows = [
        # a: buys every ~10 days, also inside the horizon -> not churned
        *[("a", f"2025-01-{d:02d}", "purchase", "", 1, 20.0) for d in (1, 11, 21, 31)],
        ("a", "2025-02-10", "purchase", "", 2, 45.0),
        ("a", "2025-03-15", "purchase", "", 1, 20.0),
        # b: bought twice, nothing after as-of -> churned
        ("b", "2025-01-03", "purchase", "", 3, 99.5), ("b", "2025-01-20", "purchase", "", 1, 10.0),
        # c: one purchase before as-of, one at exactly as-of (inside the horizon) -> not churned
        ("c", "2025-01-05", "purchase", "", 1, 5.0), ("c", "2025-02-15", "purchase", "", 1, 7.0),
        # d: first event after as-of -> not in the as-of population
        ("d", "2025-03-01", "purchase", "", 1, 8.0),
    ]
    raw = pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "item_id", "quantity", "amount"]).astype(str)
    checked = validate(raw, EVENTS)
    assert checked.rejects.empty
    return checked.clean


def test_item_less_purchase_log_labels_and_rfm():
    prep = F.prepare(purchase_log())
    assert prep.target_events == ("purchase",) and prep.spend_unit == "amount"
    as_of = prep.day("2025-02-15")
    w = F.window(prep, as_of)
    assert list(w.rfm["user_id"]) == ["a", "b", "c"]
    churned, spend = F.labels(prep, as_of, 30, w.user_codes)
    assert churned.tolist() == [False, True, False]
    assert spend.tolist() == [20.0, 0.0, 7.0]
    a = w.rfm.set_index("user_id").loc["a"]
    assert a["frequency"] == 5 and a["recency_days"] == 5 and a["mean_gap_days"] == 10 and a["monetary"] == 125.0
    assert np.isfinite(w.seq).all() and np.isfinite(w.static).all()


def test_no_leakage_across_as_of(synth_world):
    from omnidecide.store.io import load

    events = load(synth_world / "events.csv", "events").data
    prep = F.prepare(events)
    as_of = prep.day("2026-03-01")
    full = F.window(prep, as_of)
    cut = events[events["timestamp"] < pd.Timestamp("2026-03-01")]
    # scramble everything at or after as-of: features must not move
    later = events[events["timestamp"] >= pd.Timestamp("2026-03-01")].copy()
    later["amount"] = later["amount"] * 100
    later["event"] = "purchase"
    tampered = pd.concat([cut, later], ignore_index=True)
    for other in (F.prepare(cut), F.prepare(tampered)):
        w = F.window(other, other.day("2026-03-01"))
        assert list(w.rfm["user_id"]) == list(full.rfm["user_id"])
        np.testing.assert_allclose(w.seq, full.seq, atol=1e-5)
        np.testing.assert_allclose(w.static, full.static, atol=1e-5)
    # and the labels do see the horizon
    churned, _ = F.labels(prep, as_of, 90, full.user_codes)
    assert 0.05 < churned.mean() < 0.95


def test_default_as_of_keeps_label_window_inside():
    prep = F.prepare(purchase_log())
    as_of = F.default_as_of(prep, 30)
    assert prep.date(as_of) == pd.Timestamp("2025-02-14")  # last event 2025-03-15 -> window [02-14, 03-16)
    with pytest.raises(InputError, match="too short"):
        F.default_as_of(prep, 400)


def test_variable_lengths_left_aligned_and_padded_with_zeros():
    prep = F.prepare(purchase_log())
    w = F.window(prep, prep.day("2025-02-15"), n_bins=10, bin_days=7)
    # a's first event is 45 days before as-of -> 7 weekly bins; b 43 days -> 7; c 41 -> 6
    assert w.lengths.tolist() == [7, 7, 6]
    for i, n in enumerate(w.lengths):
        assert not w.seq[i, n:].any()
        assert w.seq[i, 0, F.SEQ_FEATURES.index("target_n")] > 0  # first real bin holds the first purchase


def test_padding_never_reaches_the_output():
    torch.manual_seed(0)
    net = ChurnNet(len(F.SEQ_FEATURES), len(F.STATIC_FEATURES)).eval()
    seq = torch.randn(3, 8, len(F.SEQ_FEATURES))
    lengths = torch.tensor([8, 3, 1])
    static = torch.randn(3, len(F.STATIC_FEATURES))
    noisy = seq.clone()
    for i, n in enumerate(lengths):
        noisy[i, n:] = 1e3 * torch.randn(8 - n, len(F.SEQ_FEATURES))
    longer = torch.cat([seq, torch.zeros(3, 5, len(F.SEQ_FEATURES))], 1)
    with torch.no_grad():
        a, b, c = net(seq, lengths, static)[0], net(noisy, lengths, static)[0], net(longer, lengths, static)[0]
        alone = net(seq[1:2, :3], lengths[1:2], static[1:2])[0]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(a[1:2], alone)
    # reading the state at the last real bin is what packing would give
    from torch.nn.utils.rnn import pack_padded_sequence

    with torch.no_grad():
        _, (h, _) = net.lstm(pack_padded_sequence(noisy, lengths, batch_first=True, enforce_sorted=False))
        packed = net.churn(net.trunk(torch.cat([h[-1], net.static(static)], 1))).squeeze(1)
    torch.testing.assert_close(a, packed)


def test_activity_log_without_purchases_uses_all_events():
    ev = pd.DataFrame({"user_id": ["1", "1", "2"], "item_id": ["9", "8", "9"], "event": "rating",
                       "timestamp": pd.to_datetime(["1997-10-01", "1997-11-01", "1997-10-05"])})
    prep = F.prepare(ev)
    assert prep.target_events == ("rating",) and prep.spend_unit == "count"


def test_static_ramps_piecewise_linear_and_round_trip():
    from omnidecide.models.churn.model import Scaler

    rng = np.random.default_rng(0)
    static = np.c_[rng.exponential(3.0, 2000), np.zeros(2000), rng.normal(size=2000)].astype(np.float32)
    seq, lengths = rng.normal(size=(2000, 4, 2)).astype(np.float32), np.full(2000, 4)
    sc = Scaler.fit(seq, lengths, static, static_bins=8)
    out = sc.static(static)
    # the standardised features first, then 8 ramps per varying feature; the constant feature gets none
    assert out.shape == (2000, sc.n_static_out) and sc.n_static_out == 3 + 8 + 8
    np.testing.assert_allclose(out[:, :3], (static - sc.static_mean) / sc.static_std, atol=1e-5)
    ramps = out[:, 3:11]
    assert ramps.min() >= 0 and ramps.max() <= 1
    order = np.argsort(static[:, 0])
    assert (np.diff(ramps[order].sum(1)) >= -1e-6).all()  # their sum increases with the feature ...
    assert abs(ramps.sum(1).mean() - 4.0) < 0.2            # ... by one per quantile bin crossed (mean 8/2)
    back = Scaler.from_dict(sc.to_dict())
    np.testing.assert_allclose(back.static(static), out)
    plain = Scaler.fit(seq, lengths, static)
    assert plain.static(static).shape == (2000, 3) and Scaler.from_dict(plain.to_dict()).static_edges is None
