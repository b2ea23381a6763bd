"""Celery overrides for the soak test's workers (loaded through ``GEMINI_TASKS_CELERY_CONFIG``).

Results expire after 5 seconds instead of a day, so a soak of a few minutes can see expiry at work and
Redis memory turn over, as an operator would tune ``result_expires`` in the top-level ``celeryconfig.py``.
"""

from gemini_tasks.celeryconfig import *  # noqa: F401,F403

result_expires = 5
