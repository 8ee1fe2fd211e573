"""Entry point for plain Celery: `celery -A workers.celery_app worker -Q ingest`.

Like a WSGI file, this module builds the settings once, at import, from lore.toml / .env /
LORE_* (the same sources as `lore`), and exposes the app, with the same process hooks as
`lore worker` (logs, metrics, graceful shutdown, the index owner's answer server).
"""

from __future__ import annotations

from config import load_settings
from config.logs import configure_logging
from workers.process import install_worker_hooks, prepare_metrics_dir, use_lore_logging

settings = load_settings()
prepare_metrics_dir(settings)
configure_logging(settings)

from workers.app import make_celery  # noqa: E402 - after the metrics directory is set

app = make_celery(settings)
use_lore_logging(settings)
install_worker_hooks(app, settings)
