"""The test stack as importable code (as ``celery.contrib.testing`` is Celery's), for the tests and ``bench/``:
``local_redis`` (a private redis-server), ``local_fleet`` (worker subprocesses), ``environment`` (a stack's
process environment, keys held by a test), ``stack`` (a whole stack: Redis, emulator, client, workers), ``flower``
(Flower with basic auth), ``app_config`` (this process's Celery app pointed at a stack), ``pytest_plugin`` (the
shared fixtures), ``rabbitmq`` (private vhosts), ``sentinel`` and ``netns`` (Sentinel sets, hosts in network
namespaces)."""
