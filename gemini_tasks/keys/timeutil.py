"""Pacific time: Gemini's daily quotas reset at midnight America/Los_Angeles (DST-aware)."""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")


def pacific_offset_ms(at: _dt.datetime | None = None) -> int:
    """UTC offset of Pacific time in milliseconds (negative: -25200000 in summer, -28800000 in winter)."""
    moment = at or _dt.datetime.now(_dt.timezone.utc)
    offset = moment.astimezone(PACIFIC).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() * 1000)
