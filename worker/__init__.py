"""The FF Lab training worker: a Celery worker that trains runs with ffcore (`python -m worker`).

See docs/worker.md. The API never imports it: the queue it shares with the API is `fflab.queue`.
"""
