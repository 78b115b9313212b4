"""LightGBM second stage over the stage-1 top-N: a LambdaRank reorder and a calibrated purchase probability."""
from __future__ import annotations

from pathlib import Path


class SecondStage:
    @classmethod
    def load(cls, folder: Path) -> "SecondStage | None":
        return None
