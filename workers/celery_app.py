"""Entry point for plain Celery: `celery -A workers.celery_app worker -Q ingest`.

Like a WSGI file, this module builds the settings once, at import, from lore.toml / .env /
LORE_* (the same sources as `lore`), and exposes the app.
"""

from __future__ import annotations

from config import load_settings
from config.logs import configure_logging
from workers.app import make_celery

settings = load_settings()
configure_logging(settings)
app = make_celery(settings)
