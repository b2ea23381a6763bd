"""The test stack as importable code (as ``celery.contrib.testing`` is Celery's), for the tests and ``bench/``:
``local_redis`` (a private redis-server), ``local_fleet`` (worker subprocesses), ``environment`` (a stack's
process environment), ``flower`` (Flower with basic auth), ``app_config`` (this process's Celery app pointed at a
stack), ``rabbitmq`` (private vhosts), ``sentinel`` and ``netns`` (Sentinel sets, hosts in network namespaces)."""
