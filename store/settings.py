"""Settings read from the environment, checked once in one place (a bad value is an error naming the variable)."""
from __future__ import annotations

import os

from omnidecide.models.errors import InputError


def positive_days(name: str, default: float) -> float:
    """A positive number of days from environment variable `name` (else `default`)."""
    raw = os.environ.get(name, str(default))
    try:
        days = float(raw)
        if not days > 0:
            raise ValueError
    except ValueError as e:
        raise InputError(f"{name}={raw!r}: expected a positive number of days") from e
    return days
