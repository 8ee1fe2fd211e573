"""What Lore knows and how it answers: sources -> documents -> index -> answers.

No chat platforms and no Celery here; `bot` and `workers` build on this package.
"""
