"""The canonical data contract: every table's columns, and the one validator every loader uses.

Validation is pure (DataFrame in, clean frame + rejects out) so the CLI, the training pipelines and
the online service all quarantine bad rows by the same rules. Column meanings live in docs/data.md.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

import numpy as np
import pandas as pd

from omnidecide.models.errors import InputError

EVENT_TYPES = ("view", "click", "cart", "purchase", "rating", "return", "coupon_claim", "coupon_redeem")
ITEMLESS_EVENTS = ("purchase", "coupon_claim", "coupon_redeem")  # item_id may be empty for these

# Earliest timestamp we believe; later than "now + 1 day" is impossible too (clock skew allowance).
MIN_TIMESTAMP = pd.Timestamp("1990-01-01")
# Largest magnitude any number in a file may have (amounts, prices, spend, revenue, quantities, ratings): a trillion,
# far above one retailer's week of spend or revenue, still held to a cent by a float64; sums of 10^9 such values stay
# finite, so a stray `1e308` cannot turn totals, means or fits into inf/NaN downstream. Beyond it: `impossible <col>`.
MAX_NUMBER = 1e12

Kind = Literal["id", "str", "timestamp", "date", "nonneg", "number", "event", "bool"]


@dataclass(frozen=True)
class TableSpec:
    """Columns of one canonical file: kind per column, which are required, which form the key."""

    name: str
    columns: dict[str, Kind]
    required: tuple[str, ...]
    unique: tuple[str, ...] = ()
    prefixed: dict[str, Kind] = field(default_factory=dict)  # e.g. spend_<channel> columns
    filled: tuple[str, ...] = ()  # prefixes of optional columns whose cells, where the column exists, may not be blank
    dedupe: bool = False  # a row identical to an earlier one is a redelivery: `duplicate row` (store/chunks.py)

    def kind_of(self, column: str) -> Kind | None:
        if column in self.columns:
            return self.columns[column]
        for prefix, kind in self.prefixed.items():
            if column.startswith(prefix):
                return kind
        return None


EVENTS = TableSpec(
    "events",
    {
        "user_id": "id", "item_id": "id", "timestamp": "timestamp", "event": "event",
        "quantity": "nonneg", "amount": "nonneg", "rating": "number", "channel": "str",
        "store_id": "id", "order_id": "id", "session_id": "id", "event_id": "id",
    },
    required=("user_id", "item_id", "timestamp", "event"),
    dedupe=True,
)
ITEMS = TableSpec(
    "items",
    {"item_id": "id", "category": "str", "price": "nonneg", "margin": "number", "brand": "str", "stock": "nonneg"},
    required=("item_id", "category"),
    unique=("item_id",),
)
STORE_STOCK = TableSpec(
    "store_stock", {"store_id": "id", "item_id": "id", "stock": "nonneg"},
    required=("store_id", "item_id", "stock"), unique=("store_id", "item_id"),
)
USERS = TableSpec(
    "users",
    {
        "user_id": "id", "age_band": "str", "gender": "str", "city": "str", "member_level": "str",
        "signup_date": "date", "consent_personalization": "bool",
    },
    required=("user_id",),
    unique=("user_id",),
)
TOUCHPOINTS = TableSpec(
    "touchpoints",
    {"user_id": "id", "timestamp": "timestamp", "channel": "str", "campaign": "str", "cost": "nonneg"},
    required=("user_id", "timestamp", "channel"),
)
MARKETING_MIX = TableSpec(
    "marketing_mix", {"date": "date", "revenue": "nonneg"},
    required=("date", "revenue"), unique=("date",), prefixed={"spend_": "nonneg", "revenue_": "nonneg"},
    filled=("spend_",),  # a blank week of spend is missing data, not zero spend
)
TABLES = {t.name: t for t in (EVENTS, ITEMS, STORE_STOCK, USERS, TOUCHPOINTS, MARKETING_MIX)}


class SchemaError(InputError):
    """The file as a whole is unusable (a required column is missing): no row can be trusted."""


@dataclass
class Validation:
    """Good rows (typed) and rejected rows (raw text plus `row` and `reason`)."""

    clean: pd.DataFrame
    rejects: pd.DataFrame

    @property
    def counts(self) -> dict[str, int]:
        return self.rejects["reason"].value_counts().to_dict() if len(self.rejects) else {}


def parse_timestamps(values: pd.Series) -> pd.Series:
    """ISO-8601 date/datetime or unix seconds -> naive UTC datetime64; unparsable -> NaT."""
    text = values.astype("string").str.strip()
    numeric = pd.to_numeric(text.where(text.str.fullmatch(r"-?\d+(\.\d+)?", na=False)), errors="coerce")
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    is_num = numeric.notna()
    if is_num.any():
        secs = numeric[is_num].astype("float64")
        ok = secs.between(-1e10, 1e10)  # out of datetime64 range is "impossible", not a crash
        out.loc[secs[ok].index] = pd.to_datetime(secs[ok], unit="s").astype("datetime64[ns]")
    rest = ~is_num & text.notna() & (text != "")
    if rest.any():
        parsed = pd.to_datetime(text[rest], format="ISO8601", errors="coerce", utc=True)
        out.loc[rest] = parsed.dt.tz_convert(None).astype("datetime64[ns]")
    return out


def _bool(values: pd.Series) -> pd.Series:
    mapping = {"1": True, "true": True, "yes": True, "y": True, "0": False, "false": False, "no": False, "n": False}
    return values.str.strip().str.lower().map(mapping)


def validate(df: pd.DataFrame, spec: TableSpec, *, now: pd.Timestamp | None = None,
             lines: np.ndarray | None = None) -> Validation:
    """Type every known column, quarantine each row that breaks a rule, with the first reason found.

    `df` must hold strings (read with dtype=str, keep_default_na=False) so ids are never cast to int.
    The `row` of a reject is its 1-based line in the CSV file (header is line 1), or `lines[i]` when the
    reader skipped malformed lines and knows each kept row's line.
    """
    missing = [c for c in spec.required if c not in df.columns]
    if missing:
        found = list(df.columns)
        sep = next((s for s in (";", "\t", "|") if len(found) == 1 and s in str(found[0])), None)
        hint = f" (the header looks {sep!r}-separated: write the file with commas)" if sep else ""
        if not hint and any("\ufffd" in str(c) or "\x00" in str(c) for c in found):
            hint = " (the header is not UTF-8 text: save the file as UTF-8)"
        elif not hint and {str(c).lower() for c in found} >= set(missing):
            hint = " (column names are lower case)"
        raise SchemaError(f"{spec.name}: missing required column(s) {missing}; found {found}{hint}")
    now = now or pd.Timestamp.now(tz="UTC").tz_convert(None)
    raw = df.reset_index(drop=True).astype("string").fillna("")
    reason = pd.Series(pd.NA, index=raw.index, dtype="string")
    typed = pd.DataFrame(index=raw.index)

    def flag(mask: pd.Series, why: str) -> None:
        reason.loc[mask & reason.isna()] = why

    for col in raw.columns:
        kind = spec.kind_of(col)
        text = raw[col].str.strip()
        blank = text == ""
        if kind is None:  # unknown extra columns pass through untouched
            typed[col] = raw[col]
            continue
        if (col in spec.required and not (spec.name == "events" and col == "item_id")) or col.startswith(spec.filled):
            flag(blank, f"missing {col}")
        if kind in ("id", "str"):
            typed[col] = text.where(~blank, pd.NA)
        elif kind == "event":
            low = text.str.lower()
            flag(~blank & ~low.isin(EVENT_TYPES), f"unknown {col}")
            typed[col] = low.where(~blank, pd.NA)
        elif kind in ("timestamp", "date"):
            ts = parse_timestamps(text)
            flag(~blank & ts.isna(), f"unparsable {col}")
            flag(ts.notna() & ((ts < MIN_TIMESTAMP) | (ts > now + pd.Timedelta(days=1))), f"impossible {col}")
            typed[col] = ts.dt.normalize() if kind == "date" else ts
        elif kind in ("nonneg", "number"):
            num = pd.to_numeric(text.where(~blank), errors="coerce").astype("float64")
            flag(~blank & (num.isna() | ~np.isfinite(num.fillna(0))), f"non-numeric {col}")
            if kind == "nonneg":
                flag(num < 0, f"negative {col}")
            flag(num.abs() > MAX_NUMBER, f"impossible {col}")
            typed[col] = num
        elif kind == "bool":
            b = _bool(text)
            flag(~blank & b.isna(), f"not a boolean {col}")
            typed[col] = b.astype("boolean")

    if spec.name == "events":
        # Item-less rows are allowed for purchases (stores that record order totals) and coupon events.
        flag(typed["item_id"].isna() & ~typed["event"].isin(ITEMLESS_EVENTS), "missing item_id")
    if spec.unique:
        dup = typed.duplicated(list(spec.unique), keep="first") & reason.isna()
        flag(dup, f"duplicate {'+'.join(spec.unique)}")

    bad = reason.notna()
    rejects = raw[bad].copy()
    rejects.insert(0, "reason", reason[bad].astype(str))
    line_of = np.asarray(lines) if lines is not None else np.arange(len(raw)) + 2
    rejects.insert(0, "row", line_of[bad.to_numpy()].astype(int))
    return Validation(clean=typed[~bad].reset_index(drop=True), rejects=rejects.reset_index(drop=True))


def validate_records(records: list[dict], spec: TableSpec, *, field: str = "events",
                     now: pd.Timestamp | None = None) -> pd.DataFrame:
    """JSON records (an HTTP request's list) -> typed frame, all or nothing.

    A request is either taken whole or refused with every bad record named (`events[3]: unknown event`), so a
    caller never gets an acknowledgement for rows that were quietly dropped."""
    if not records:
        return validate(pd.DataFrame(columns=list(spec.required)), spec, now=now).clean
    def text(v):  # noqa: E306  (datetimes from pydantic keep their ISO form; None is a blank cell)
        return "" if v is None else v.isoformat() if hasattr(v, "isoformat") else str(v)
    raw = pd.DataFrame([{k: text(v) for k, v in r.items()} for r in records])
    checked = validate(raw, spec, now=now, lines=np.arange(len(raw)))
    if len(checked.rejects):
        named = "; ".join(f"{field}[{r.row}]: {r.reason}" for r in checked.rejects.head(10).itertuples())
        more = f" (and {len(checked.rejects) - 10} more)" if len(checked.rejects) > 10 else ""
        raise SchemaError(f"{len(checked.rejects)} of {len(raw)} {field} rejected, request refused whole: {named}{more}")
    return checked.clean


# The forms `quick_events` takes without pandas; any other text goes through `validate_records`.
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?")
_SECONDS = re.compile(r"-?\d+(\.\d+)?")
_NUMBER = re.compile(r"\d+(\.\d*)?([eE][+-]?\d+)?")
STORED_EVENT = ("user_id", "item_id", "event", "timestamp", "channel", "store_id", "quantity", "amount")
# event columns /events accepts and the online store does not keep (no rule of `validate` can refuse an id)
UNSTORED_IDS = ("order_id", "session_id", "event_id")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _text(v: object) -> str:
    return "" if v is None else v.isoformat() if hasattr(v, "isoformat") else str(v)


def _seconds(v: object) -> float | None:
    """Unix seconds of a timestamp in a plain form (datetime, ISO text, unix seconds), else None."""
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    text = _text(v).strip()
    if _SECONDS.fullmatch(text):
        secs = float(text)
        return secs if -1e10 <= secs <= 1e10 else None
    if not _ISO.fullmatch(text):
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:  # e.g. month 13: the full rules name it
        return None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


def _nonneg(v: object) -> tuple[bool, float | None]:
    if v is None or v == "":
        return True, None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        x = float(v)
    elif isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
        x = float(v)
    else:
        return False, None
    return (math.isfinite(x) and 0 <= x <= MAX_NUMBER), x


def quick_events(records: list[dict], now: pd.Timestamp | None = None) -> list[tuple] | None:
    """The fast path of `validate_records(records, EVENTS)` for JSON events in the plain forms (ids, a known event,
    an ISO or unix-seconds timestamp, quantity and amount in [0, MAX_NUMBER]): one tuple per record in `STORED_EVENT`
    order, timestamp as unix seconds (UTC). None as soon as any record needs more — another column, another form, or a
    rule it breaks — and then `validate_records` decides and names every bad record. Why: the frame-wide rules cost
    about 15 ms per call whatever the size, which for `/events` batches of 100 is most of the server's time; this
    path accepts only what those rules accept (tests/test_schema.py checks the two agree)."""
    now = now or pd.Timestamp.now(tz="UTC").tz_convert(None)
    lo = (MIN_TIMESTAMP - pd.Timestamp(0)).total_seconds()
    hi = (now + pd.Timedelta(days=1) - pd.Timestamp(0)).total_seconds()
    out = []
    for r in records:
        if "item_id" not in r or any(r[k] is not None for k in r.keys() - set(STORED_EVENT) - set(UNSTORED_IDS)):
            return None
        user, item = _text(r.get("user_id")).strip(), _text(r["item_id"]).strip()
        event = _text(r.get("event")).strip().lower()
        at = _seconds(r.get("timestamp"))
        (q_ok, quantity), (a_ok, amount) = _nonneg(r.get("quantity")), _nonneg(r.get("amount"))
        if not (user and event in EVENT_TYPES and (item or event in ITEMLESS_EVENTS) and at is not None
                and lo <= at <= hi and q_ok and a_ok):
            return None
        channel, store = _text(r.get("channel")).strip(), _text(r.get("store_id")).strip()
        out.append((user, item or None, event, at, channel or None, store or None, quantity, amount))
    return out
