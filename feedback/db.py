"""The feedback database: an engine and session factory from settings, and its migrations.

Default: SQLite at `data_dir/feedback.sqlite3` (WAL, so readers never block the writer).
`database.url = "postgresql://…"` selects PostgreSQL through psycopg 3. Migrations are
Alembic revisions in `feedback/migrations`, run programmatically (no alembic.ini).
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings

log = logging.getLogger(__name__)

_PG_MIGRATION_LOCK = 0x6C6F7265  # "lore": an advisory lock id, so workers migrate one at a time


def database_url(settings: Settings) -> str:
    url = settings.database.url
    if not url:
        return f"sqlite:///{(settings.data_dir / 'feedback.sqlite3').resolve()}"
    for plain in ("postgresql://", "postgres://"):  # SQLAlchemy would pick psycopg2; we ship psycopg 3
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(database_url(settings))

    # -- migrations ------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        with self._migrating() as conn:
            command.upgrade(self._alembic(conn), revision)

    def downgrade(self, revision: str = "base") -> None:
        with self._migrating() as conn:
            command.downgrade(self._alembic(conn), revision)

    def current(self) -> str | None:
        with self.engine.connect() as conn, _quiet_alembic():
            return MigrationContext.configure(conn).get_current_revision()

    def head(self) -> str | None:
        from alembic.script import ScriptDirectory

        with _quiet_alembic():
            return ScriptDirectory.from_config(self._alembic(None)).get_current_head()

    def ensure_schema(self) -> None:
        """Upgrade to head once per process (cheap when already there)."""
        with self._schema_lock:
            if not self._schema_ready:
                if self.current() != self.head():
                    with _quiet_alembic():
                        self.upgrade()
                    log.info("feedback database migrated to %s", self.head())
                self._schema_ready = True

    def _alembic(self, conn: Connection | None) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", "feedback:migrations")
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["connection"] = conn
        return cfg

    @contextmanager
    def _migrating(self) -> Iterator[Connection]:
        # Several workers may start at once: only one migrates, the others wait and find it done.
        if self.is_sqlite:
            lock_path = Path(make_url(self.url).database or "feedback").with_suffix(".migrate.lock")
            with open(lock_path, "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                with self.engine.connect() as conn:
                    yield conn
                    conn.commit()
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                yield conn
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    # Alembic logs every context it opens at INFO: routine here, not news.
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        alembic_log.setLevel(level)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take over transaction control so "begin" can issue BEGIN IMMEDIATE (see below).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    # Take the write lock up front: two processes upgrading a read lock to a write lock
    # deadlock in SQLite, and busy_timeout does not help with that.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
