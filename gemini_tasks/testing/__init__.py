"""The test stack as importable code (as celery.contrib.testing): private redis-server, emulator, workers."""
