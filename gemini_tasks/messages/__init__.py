"""What client and worker exchange, below both so neither imports the other.

* :mod:`.job` -- the typed job message (:class:`Job`, its :class:`CallPolicy`, :class:`SpeechSpec`,
  :class:`ImageSpec`, :class:`JobState`) with its wire form and its defaults, and the Celery task names it is sent to.
* :mod:`.results` -- :class:`TaskFailed`, how a request that ends in an error comes back.
* :mod:`.blobs` -- audio results, stored beside the result backend and fetched once by the caller.
"""

from .job import (
    BATCH_TIER_STEP,
    DEADLINE_GRACE,
    TASK_NAMES,
    CallPolicy,
    ImageSpec,
    Job,
    JobState,
    PoolSpec,
    SpeechSpec,
    task_name,
)
from .results import TaskFailed

__all__ = ["BATCH_TIER_STEP", "DEADLINE_GRACE", "TASK_NAMES", "CallPolicy", "ImageSpec", "Job", "JobState", "PoolSpec",
           "SpeechSpec", "TaskFailed", "task_name"]
