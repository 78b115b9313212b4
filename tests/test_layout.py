"""The house rules: one import package, and data flowing one way (models <- store <- training, serving <- cli)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["models", "store", "training", "serving", "cli"]
# which omnidecide layers each layer may import
ALLOWED = {
    "models": {"models"},
    "store": {"models", "store"},
    "training": {"models", "store", "training"},
    "serving": {"models", "store", "serving"},
    "cli": set(LAYERS),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, module-level or inside functions, as (line, dotted name)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_imports_flow_one_way():
    bad = []
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            for line, mod in _imports(path):
                parts = mod.split(".")
                if parts[0] in LAYERS:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports top-level {mod!r}; use 'omnidecide.{mod}'")
                elif parts[0] == "omnidecide" and len(parts) > 1 and parts[1] not in ALLOWED[layer]:
                    bad.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {mod}")
    assert not bad, "\n".join(bad)


def test_every_folder_is_a_listed_package():
    """Each code folder has an __init__.py and is listed in pyproject (else a wheel silently leaves it out)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"omnidecide"}
    for layer in LAYERS:
        for init in (ROOT / layer).rglob("__init__.py"):
            found.add("omnidecide." + ".".join(init.parent.relative_to(ROOT).parts))
        for folder in (ROOT / layer).rglob("*"):
            if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), f"{folder.relative_to(ROOT)} has no __init__.py"
    assert found == listed


def test_only_omnidecide_is_importable_from_outside(tmp_path):
    """Installed, the project is `omnidecide.*`; the bare folder names resolve to nothing of ours."""
    code = ("import importlib.util, omnidecide.models.schema, omnidecide.cli\n"
            "print([n for n in ('models', 'training', 'serving', 'cli', 'store') "
            "if importlib.util.find_spec(n) is not None])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_and_training_files_stay_short():
    """No module in models/ or training/ over 400 lines: a file the next engineer reads in one pass."""
    long = [f"{p.relative_to(ROOT)}: {n} lines" for layer in ("models", "training") for p in (ROOT / layer).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400]
    assert not long, "\n".join(long)
