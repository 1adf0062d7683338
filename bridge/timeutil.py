"""One text format for every stored time, so SQL string comparison orders them correctly."""
from __future__ import annotations

from datetime import UTC, datetime


def to_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is several times cheaper than strftime, and this runs on every webhook and refresh
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def from_epoch(seconds: float) -> str:
    return to_iso(datetime.fromtimestamp(seconds, UTC))


def now_iso() -> str:
    return to_iso(datetime.now(UTC))


def parse_iso(text: str) -> datetime:
    """Accept our own format and any ISO-8601 a resolver may send (naive means UTC)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-05:00 is past datetime.max in UTC
        raise ValueError(f"{text[:64]!r} is outside the range of representable times") from None


def to_epoch(text: str) -> float:
    return parse_iso(text).timestamp()
