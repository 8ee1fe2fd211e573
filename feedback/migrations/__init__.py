"""Alembic revisions for the feedback database (script_location "feedback:migrations")."""
