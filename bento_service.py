"""Entry point of the built Bento (`service:` in bentofile.yaml).

A Bento holds our code as it lies in the repository (serving/, models/, store/ at the top of its src folder), while
the code imports itself as the package `omnidecide` (pyproject maps the repository root to that name). This module
makes the folder it lies in the package `omnidecide` before anything imports it, so `bentoml serve omnidecide:latest`
runs the code inside the Bento, in any working directory and whether or not omnidecide is installed. In the
repository (`bentoml build` imports this to inspect the service) that folder is the repository root: the same code.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

if "omnidecide" not in sys.modules:
    _here = Path(__file__).resolve().parent
    _spec = importlib.util.spec_from_file_location("omnidecide", _here / "__init__.py",
                                                   submodule_search_locations=[str(_here)])
    _package = importlib.util.module_from_spec(_spec)
    sys.modules["omnidecide"] = _package
    _spec.loader.exec_module(_package)

# the model store is the one BentoML serves from (BENTOML_HOME, else ~/bentoml), not a folder beside the code
from bentoml._internal.configuration.containers import BentoMLContainer  # noqa: E402

os.environ.setdefault("BENTOML_HOME", str(BentoMLContainer.bentoml_home.get()))

from omnidecide.serving.service import OmniDecide  # noqa: E402,F401
