"""The FF Lab training worker: a Celery worker that trains runs with ffcore (`python -m worker`).

See docs/worker.md. The API imports only `worker.celery_app`, which stays free of torch.
"""
