"""The request log (a bounded ring buffer) and running counters for the stats endpoint.

Sequence numbers are assigned when an entry is appended, i.e. when the request *finishes*, so
`since=SEQ` polling never misses a slow request that started earlier.  Counters are kept apart from
the ring buffer so totals stay right after old entries have been dropped.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any


class RequestLog:
    def __init__(self, maxlen: int = 100000) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self.seq = 0
        self.started = time.time()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.total = 0
        self.by_status: Counter[int] = Counter()
        self.by_key_label: Counter[str] = Counter()
        self.by_project: Counter[str] = Counter()
        self.by_endpoint: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.by_fault: Counter[str] = Counter()
        self.by_quota: Counter[str] = Counter()
        self.by_key_label_status: dict[str, Counter[int]] = {}
        self.bytes_in = 0

    def resize(self, maxlen: int) -> None:
        if maxlen != self.entries.maxlen:
            self.entries = deque(self.entries, maxlen=maxlen)

    def clear(self) -> None:
        """Drop entries (sequence numbers keep counting so pollers never see them reused)."""
        self.entries.clear()

    def clear_stats(self) -> None:
        self._reset_counters()
        self.started = time.time()

    def append(self, entry: dict[str, Any]) -> None:
        self.seq += 1
        entry["seq"] = self.seq
        self.entries.append(entry)
        status = entry["status"]
        label = entry["key_label"]
        self.total += 1
        self.by_status[status] += 1
        self.by_endpoint[entry["endpoint"]] += 1
        if label is not None:
            self.by_key_label[label] += 1
            per = self.by_key_label_status.get(label)
            if per is None:
                per = self.by_key_label_status[label] = Counter()
            per[status] += 1
        if entry["project"] is not None:
            self.by_project[entry["project"]] += 1
        if entry["model"] is not None:
            self.by_model[entry["model"]] += 1
        if entry["fault"] is not None:
            self.by_fault[entry["fault"]] += 1
        if entry["quota"] is not None:
            self.by_quota[entry["quota"]] += 1
        self.bytes_in += entry.get("bytes_in") or 0

    def since(self, seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        """Entries with seq > `seq`, oldest first (walks back from the newest only as far as needed)."""
        out = []
        for entry in reversed(self.entries):
            if entry["seq"] <= seq:
                break
            out.append(entry)
        out.reverse()
        if limit is not None:
            out = out[:limit]
        return out

    def stats(self) -> dict[str, Any]:
        def s(c: Counter) -> dict[str, int]:
            return {str(k): v for k, v in c.items()}

        return {
            "total": self.total,
            "by_status": s(self.by_status),
            "by_key_label": s(self.by_key_label),
            "by_project": s(self.by_project),
            "by_endpoint": s(self.by_endpoint),
            "by_model": s(self.by_model),
            "by_fault": s(self.by_fault),
            "by_quota": s(self.by_quota),
            "by_key_label_status": {k: s(v) for k, v in self.by_key_label_status.items()},
            "ok": self.by_status.get(200, 0),
            "errors": self.total - self.by_status.get(200, 0),
            "bytes_in": self.bytes_in,
            "last_seq": self.seq,
            "log_size": len(self.entries),
            "uptime_seconds": round(time.time() - self.started, 3),
        }
