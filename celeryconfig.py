"""Operator overrides for the gemini-tasks Celery app (Celery's ``celeryconfig`` convention).

The package's own settings live in ``gemini_tasks/celeryconfig.py`` (JSON only, late acks, requeue on
worker loss, prefetch 1, a visibility timeout above every time limit, events for Flower, two queues).
This file is loaded after them when it is importable from the worker's working directory: set a name
here to override it, for example::

    worker_concurrency = 32
    result_expires = 6 * 3600
"""

from gemini_tasks.celeryconfig import *  # noqa: F401,F403  (re-export the defaults)
