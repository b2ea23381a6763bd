"""How processes reach the broker and size their connections; below everything that connects.

* :mod:`.brokers` -- the Celery settings that depend on the broker URL (Redis, Sentinel, RabbitMQ), the queues,
  the enqueue-time header.
* :mod:`.kombu_redis` -- kombu's Redis transport, minus a redis-py client object built for every broker command.
* :mod:`.pools` -- the calls in flight this process holds, which every connection pool it builds follows.
"""
