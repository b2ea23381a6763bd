"""What a worker does: thin Celery tasks, execution (admit, call, report), uploads, result blobs, key announcement."""
