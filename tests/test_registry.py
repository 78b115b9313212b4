"""Model store: versions with metadata, promotion pointer, rollback, canary — in a private BENTOML_HOME."""
import json
import time

import pytest

from omnidecide.store import registry


def _save(value: str) -> str:
    def write(folder):
        (folder / "weights.json").write_text(json.dumps({"v": value}))
    tag = registry.save("churn", write, metrics={"auc": 0.7}, params={"h": 90}, data_fingerprint="abc")
    time.sleep(0.01)
    return tag


def test_save_get_promote_rollback_canary(monkeypatch, own_stages):
    monkeypatch.setattr(registry, "_loads", lambda name, tag: None)  # these toy artefacts are not real models
    registry._write_stages({k: v for k, v in registry._read_stages().items() if k != "churn"})  # nothing promoted
    a, b, c = _save("a"), _save("b"), _save("c")
    assert a != b != c and a.startswith("churn:")
    assert registry.get("churn").tag.name == "churn"
    assert str(registry.get("churn").tag) == c  # no promotion: latest
    assert json.loads((registry.path("churn", a) / "weights.json").read_text()) == {"v": "a"}
    meta = registry.get("churn", a).info.metadata
    assert meta["metrics"] == {"auc": 0.7} and meta["data_fingerprint"] == "abc"

    registry.promote(a)
    assert str(registry.get("churn").tag) == a  # promoted wins over latest
    registry.promote(b)
    registry.set_canary(c, 0.05)
    st = registry.stages("churn")
    assert st["production"] == b and st["canary"] == {"tag": c, "share": 0.05}
    assert {r["tag"]: r["stage"] for r in registry.versions("churn")}[c] == "canary"
    registry.rollback("churn")
    assert str(registry.get("churn").tag) == a and "canary" not in registry.stages("churn")
    registry.rollback("churn")  # the first promotion is undone too: back to c, the latest that served before it
    assert str(registry.get("churn").tag) == c
    with pytest.raises(registry.RegistryError, match="no earlier"):
        registry.rollback("churn")
    assert [e["action"] for e in registry.decisions("churn")][-5:] == ["promote", "promote", "canary", "rollback",
                                                                      "rollback"]
    import bentoml

    for tag in (a, b, c):  # toy versions: a later test's new database would serve the latest of them
        bentoml.models.delete(tag)


def test_unknown_things_are_clear_errors():
    with pytest.raises(registry.RegistryError, match="train allocator"):
        registry.get("allocator", "allocator:doesnotexist")
    with pytest.raises(registry.RegistryError, match="unknown model name"):
        registry.save("nope", lambda f: None, metrics={}, params={}, data_fingerprint="")
    with pytest.raises(registry.RegistryError):
        registry.set_canary("churn:whatever", 2.0)
    for bad in ("recommender:doesnotexist", "recommender"):
        with pytest.raises(registry.RegistryError, match="models list|train recommender"):
            registry.promote(bad)
        with pytest.raises(registry.RegistryError, match="models list|train recommender"):
            registry.set_canary(bad, 0.05)


def test_unknown_model_names_and_malformed_tags_are_named():
    """`models promote bogus:abc` must not answer "train one with `omnidecide train bogus`", and a malformed tag
    (`:`, `recommender:`) must be an input error, not BentoML's traceback."""
    for call in (lambda: registry.promote("bogus:abc"), lambda: registry.promote(":"), lambda: registry.rollback("bogus"),
                 lambda: registry.versions("bogus"), lambda: registry.get("bogus")):
        with pytest.raises(registry.RegistryError, match="unknown model .*one of recommender, churn, allocator"):
            call()
    with pytest.raises(registry.RegistryError, match="not name:version"):
        registry.promote("recommender:")
