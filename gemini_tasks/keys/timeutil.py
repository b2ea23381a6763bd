"""Pacific time: Gemini's daily quotas reset at midnight America/Los_Angeles (DST-aware).

The scripts compute days from Redis time, not from a worker's clock, so they need to know the offset at any
moment near now, not only the offset at this host's now: :func:`pacific_tz_table` gives them the offsets
in force from about a year before to a year after, with the moments they change (from tzdata).
"""

from __future__ import annotations

import datetime as _dt
import time
from functools import lru_cache
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")
_HOUR = 3600


def pacific_offset_ms(at: _dt.datetime | None = None) -> int:
    """UTC offset of Pacific time in milliseconds (negative: -25200000 in summer, -28800000 in winter)."""
    moment = at or _dt.datetime.now(_dt.UTC)
    offset = moment.astimezone(PACIFIC).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() * 1000)


def _offset_s(ts: int) -> int:
    return pacific_offset_ms(_dt.datetime.fromtimestamp(ts, _dt.UTC)) // 1000


@lru_cache(maxsize=4)
def _table(day: int) -> str:
    start = day * 86400 - 400 * 86400
    end = day * 86400 + 400 * 86400
    entries = [(start, _offset_s(start))]
    day_s = 24 * _HOUR
    t = start
    while t < end:  # daily scan; a day whose offset changed is scanned hourly (transitions are on whole hours)
        nxt = t + day_s
        if _offset_s(nxt) != entries[-1][1]:
            h = t
            while _offset_s(h) == entries[-1][1]:
                h += _HOUR
            entries.append((h, _offset_s(h)))
        t = nxt
    return ",".join(f"{s * 1000}:{off * 1000}" for s, off in entries)


def pacific_tz_table(now: float | None = None) -> str:
    """``"start_ms:offset_ms,..."``: Pacific UTC offsets from ~400 days before ``now`` to ~400 days after, in
    time order (the format lib.lua's ``parse_tz`` reads). Cached per UTC day."""
    day = int((time.time() if now is None else now) // 86400)
    return _table(day)
