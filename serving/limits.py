"""Request limits of the HTTP service, read once from the environment, and the field types that enforce them.

Why: without limits one client posting a 2 MB `recent_events` list slows every other caller's `/recommend` by
orders of magnitude, and a 1 MB user id ends up in the decision log. Every limit is named in the error it causes
(413 for the body, 422 for a list, an id or a text that is too long, 400 for a malformed value or a money amount
over its limit) and can be raised by its environment variable (README "Limits"). Timestamps are bounded to the years 1900-2200 because pandas (nanosecond
timestamps) cannot hold dates outside roughly 1677-2262: `9999-12-31` is a bad request, not a server error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from omnidecide.models.schema import MAX_NUMBER

# No C0/C1 control characters (NUL included) and no Unicode line or paragraph separators in an id: they break
# line-oriented logs and exports. The same rule is the `pattern` the OpenAPI document shows.
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+$"
FIRST_YEAR, LAST_YEAR = 1900, 2200
NOTE_CHARS = 500  # free text a person writes: an item title, an admin `reason`


@dataclass(frozen=True)
class Limits:
    """Each field is read from OMNIDECIDE_MAX_<FIELD NAME IN CAPITALS>, e.g. OMNIDECIDE_MAX_BODY_BYTES."""

    body_bytes: int = 8 * 1024 * 1024  # a /predict_churn batch of ~50k events fits
    id_chars: int = 128  # user, item, store and channel ids
    recent_events: int = 200  # per /recommend
    exclude: int = 1000  # per /recommend
    candidates: int = 500  # per /bid
    events: int = 10_000  # per /events batch
    items: int = 10_000  # per /items batch
    user_ids: int = 1000  # per /customer_scores and /predict_churn by id
    churn_events: int = 100_000  # per /predict_churn
    # any money amount: event amount, price, expected_spend, reference_value, budget, min/max; by default the cap every
    # input file has (models/schema.MAX_NUMBER), so an amount /events takes is one a file of events may hold too
    amount: int = int(MAX_NUMBER)

    @staticmethod
    def env_name(field: str) -> str:
        return f"OMNIDECIDE_MAX_{field.upper()}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Limits":
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(cls.env_name(f.name))
            if raw is not None:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{cls.env_name(f.name)}={raw!r}: expected a whole number") from None
                if values[f.name] < 1:
                    raise ValueError(f"{cls.env_name(f.name)}={raw!r}: must be at least 1")
        return cls(**values)


LIMITS = Limits.from_env()


def _in_range(value: date) -> date:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"year {value.year} is outside {FIRST_YEAR}-{LAST_YEAR}")
    return value


def _str_time_in_range(value: datetime | str) -> datetime | str:
    """A timestamp given as text is parsed by the data rules later; an ISO date outside the range is refused here."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return value  # not ISO: `validate_records` names the row and the reason
        _in_range(parsed)
        return value
    return _in_range(value)


# Ids are stripped of surrounding whitespace, as every loader and `/events` store them (models/schema.py): without it
# `/events` stored " u1" as "u1" while `/forget_user` and `/recommend` looked for " u1", and the forget left the events.
_STRIP = StringConstraints(strip_whitespace=True)
Id = Annotated[str, _STRIP, Field(min_length=1, max_length=LIMITS.id_chars, pattern=ID_PATTERN)]
# an optional id may be empty (an item-less purchase exported as `item_id,""`): same limits otherwise
MaybeId = Annotated[str, _STRIP, Field(max_length=LIMITS.id_chars, pattern=ID_PATTERN.replace("]+$", "]*$"))]


def _storable(value: str) -> str:
    """Free text (a title, an idempotency key) goes into the database as is: the databases' one rule (`db.storable`:
    PostgreSQL text holds no NUL, and neither holds a lone surrogate; the insert failed and the request answered 500)
    is applied here on every database alike."""
    from omnidecide.store.db import storable

    if not storable(value):
        raise ValueError("contains a NUL character or a lone surrogate, which cannot be stored")
    return value


Text = Annotated[str, AfterValidator(_storable)]
Note = Annotated[Text, Field(max_length=NOTE_CHARS)]


# A money amount (currency units): finite, >= 0 and at most LIMITS.amount; the one type of every money field (a field
# narrows it: `Annotated[Money, Field(ge=1)]`). Why a ceiling: 1e308 passed every check and came out as a "low" churn
# risk with absurd or null figures (sums and squares of such amounts overflow); no retailer's amount comes near it.
Money = Annotated[float, Field(ge=0, le=LIMITS.amount, allow_inf_nan=False)]

Day = Annotated[date, AfterValidator(_in_range)]
Timestamp = Annotated[datetime, AfterValidator(_in_range)]
TimestampOrText = Annotated[datetime | str, AfterValidator(_str_time_in_range)]


def limited(name: str, what: str = "") -> dict:
    """`Field(**limited("recent_events"))`: max_length from the limit, and a description that names its variable."""
    n = getattr(LIMITS, name)
    return {"max_length": n, "description": f"{what + '; ' if what else ''}at most {n} "
                                            f"(raise with {Limits.env_name(name)})"}


class RequestModel(BaseModel):
    """Base of every request body: no NaN or infinity in a number (JSON cannot carry them; Python's parser can), and
    no field the endpoint does not know: a misspelt optional field (`exclude_item`) was dropped without a word and the
    request answered as if it had not been sent."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")


class NoBody(RequestModel):
    """The body of an endpoint that takes no fields (`/models`): empty, `{}`, or refused naming the field."""
