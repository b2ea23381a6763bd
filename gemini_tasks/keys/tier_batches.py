"""Redis records of a ``service_tier="batch"`` submission: the group, its parts (one Gemini Batch API job
each), the per-prompt results and the cancel flag. All key names live here.

Layout (hash-tagged per group so a Redis Cluster keeps one group on one shard):

* ``gt:{tb-<id>}:meta``     JSON: model, pool spec, policy, the prompt jobs, part count, poll settings
* ``gt:{tb-<id>}:part:<n>`` hash: project, key ids, prompt indices (JSON), job name, state, attempts, stats
* ``gt:{tb-<id>}:results``  hash: prompt index -> result JSON (written once per prompt, when its job ends)
* ``gt:{tb-<id>}:cancel``   set when the caller cancels

Every record expires ``ttl`` seconds after its last write (default 24 h, the result backend's lifetime).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

GROUP_PREFIX = "tb-"
DEFAULT_TTL = 24 * 3600


def is_tier_batch(group_id: str) -> bool:
    return group_id.startswith(GROUP_PREFIX)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TierBatchRecord:
    def __init__(self, client: redis.Redis, group_id: str, ttl: float = DEFAULT_TTL) -> None:
        if not is_tier_batch(group_id):
            raise ValueError(f"{group_id!r} is not a batch-tier group id")
        self.client = client
        self.group_id = group_id
        self.ttl = int(ttl)
        self.base = f"gt:{{{group_id}}}:"

    # -- keys
    @property
    def meta_key(self) -> str:
        return self.base + "meta"

    def part_key(self, n: int) -> str:
        return f"{self.base}part:{int(n)}"

    @property
    def results_key(self) -> str:
        return self.base + "results"

    @property
    def cancel_key(self) -> str:
        return self.base + "cancel"

    # -- meta
    def create(self, meta: Mapping[str, Any], parts: Sequence[Mapping[str, Any]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.meta_key, json.dumps({**meta, "parts": len(parts)}), ex=self.ttl)
        for n, part in enumerate(parts):
            key = self.part_key(n)
            pipe.hset(key, mapping={k: json.dumps(v) for k, v in part.items()})
            pipe.expire(key, self.ttl)
        pipe.execute()

    def meta(self) -> dict[str, Any] | None:
        raw = self.client.get(self.meta_key)
        return json.loads(raw) if raw else None

    # -- parts
    def part(self, n: int) -> dict[str, Any]:
        raw = self.client.hgetall(self.part_key(n))
        return {_s(k): json.loads(v) for k, v in raw.items()}

    def update_part(self, n: int, **fields: Any) -> None:
        key = self.part_key(n)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in fields.items()})
        pipe.expire(key, self.ttl)
        pipe.execute()

    def claim_create(self, n: int, seconds: float) -> bool:
        """One creator per part at a time (a redelivered step must not create a second job)."""
        return bool(self.client.set(self.part_key(n) + ":creating", 1, nx=True, ex=max(1, int(seconds))))

    def release_create(self, n: int) -> None:
        self.client.delete(self.part_key(n) + ":creating")

    # -- results
    def put_results(self, results: Mapping[int, Mapping[str, Any]]) -> None:
        if not results:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.results_key, mapping={str(i): json.dumps(r) for i, r in results.items()})
        pipe.expire(self.results_key, self.ttl)
        pipe.execute()

    def results(self, indices: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
        if indices is None:
            raw = self.client.hgetall(self.results_key)
            return {int(_s(k)): json.loads(v) for k, v in raw.items()}
        idx = list(indices)
        values = self.client.hmget(self.results_key, [str(i) for i in idx]) if idx else []
        return {i: json.loads(v) for i, v in zip(idx, values) if v is not None}

    def result_count(self) -> int:
        return int(self.client.hlen(self.results_key))

    # -- cancel
    def cancel(self) -> None:
        self.client.set(self.cancel_key, 1, ex=self.ttl)

    def cancelled(self) -> bool:
        return bool(self.client.exists(self.cancel_key))
