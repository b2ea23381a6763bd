"""A worker's result write in one Redis round trip instead of two, with the same guarantee.

Celery's ``BaseKeyValueStoreBackend._store_result`` first reads the task's stored result (a GET), so that a late
copy of a task (a redelivered message, a worker that was cut off and came back) never overwrites a SUCCESS, and
then writes it with SET + PUBLISH in a MULTI/EXEC pipeline: two round trips per task, 6-9 % of a worker's CPU
(``bench/profile_cpu.py``). :func:`install` makes Celery's Redis backend (and its Sentinel variant) do the
check, the write and the publish in one script, in worker processes only (``worker_init``); the read and the
write are then also atomic, so no copy can slip in between them. Everything else is Celery's: the result meta,
its encoding, the size check, the expiry (``result_expires``, ``result_failure_expires`` for failures) and the
retry policies around the write.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from celery import signals, states
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

#: the check, the write and the publish as one script (keys, arguments, returns: the file's header)
STORE = (resources.files("gemini_tasks.worker") / "lua" / "store_result.lua").read_text()

_SCRIPT_ATTR = "_gemini_tasks_store_script"


def _write(backend: Any, key: Any, value: Any, expires: Any) -> Any:
    script = backend.__dict__.get(_SCRIPT_ATTR)
    if script is None or script.registered_client is not backend.client:
        script = backend.client.register_script(STORE)
        backend.__dict__[_SCRIPT_ATTR] = script
    return script(keys=[key], args=[value, int(expires or 0)])


def _store_result(self: Any, task_id: Any, result: Any, state: str, traceback: Any = None, request: Any = None,
                  **kwargs: Any) -> Any:
    meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
    meta["task_id"] = bytes_to_str(task_id)
    value = self.encode(meta)
    if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
        raise BackendStoreError("value too large for Redis backend", state=state, task_id=task_id)
    expires = self.failure_expires if state == states.FAILURE else self.expires
    self.ensure(_write, (self, self.get_key_for_task(task_id), value, expires))
    return result


def install() -> bool:
    """Make Celery's Redis result backends store results in one round trip (this process). The script reads the
    stored meta as JSON: call it only with ``result_serializer = "json"`` (the only one this project accepts)."""
    from celery.backends.redis import RedisBackend

    if getattr(RedisBackend, "_gemini_tasks_one_trip_store", False):
        return True
    RedisBackend._store_result = _store_result  # type: ignore[method-assign]
    RedisBackend._gemini_tasks_one_trip_store = True  # type: ignore[attr-defined]
    return True


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    if sender is not None and sender.app.conf.result_serializer == "json":
        install()  # the task modules are imported before worker_init: tasks.py imports this one
