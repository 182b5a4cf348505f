"""The database: one SQLAlchemy 2.0 engine per app, sessions per request and per job.

``DATABASE_URL`` (app config, else the environment variable, else SQLite at
``DATA_DIR/interformer.sqlite3``) selects the database; PostgreSQL URLs
(``postgresql://...``) use the psycopg 3 driver. The schema is created and upgraded by the
Alembic migrations in ``webapp/migrations`` (``upgrade head`` runs when the app starts), never by
``create_all``.

In a request, ``db_session()`` is the request's session (closed at teardown); background code
opens its own with ``Database.session()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class Base(DeclarativeBase):
    """Declarative base of every model (webapp/models.py)."""


def normalize_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` -> the psycopg 3 driver (the one we install)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def database_url(config: dict) -> str:
    url = config.get("DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return normalize_url(str(url))
    return f"sqlite:///{Path(config['DATA_DIR']).resolve() / 'interformer.sqlite3'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA journal_mode=WAL")  # the worker thread writes while requests read
    cur.close()


class Database:
    """Engine + session factory for one URL."""

    def __init__(self, url: str):
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        kwargs: dict = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for code outside a request (jobs, CLI); rolled back on error, closed after."""
        s = self.sessionmaker()
        try:
            yield s
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def upgrade(self) -> None:
        """Apply the Alembic migrations up to head."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def init_app(app: Flask) -> Database:
    db = Database(database_url(app.config))
    db.upgrade()
    app.extensions["db"] = db

    @app.teardown_appcontext
    def _close_request_session(_exc):
        s = g.pop("db_session", None)
        if s is not None:
            s.close()

    return db


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["db"]


def db_session() -> Session:
    """The current request's session (opened on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = get_db().sessionmaker()
    return g.db_session


class DatabaseUnreachable(RuntimeError):
    """The PostgreSQL server of ``temporary_postgres_database`` could not be reached."""


@contextmanager
def temporary_postgres_database(server_url: str, prefix: str = "interformer_tmp", keep: bool = False) -> Iterator[str]:
    """A fresh database on the PostgreSQL server of ``server_url``, dropped afterwards (unless
    ``keep``); yields its URL. For the test suite and the load benchmark, which each want a
    database of their own on the shared server. Raises ``DatabaseUnreachable``."""
    import secrets

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    admin_url = normalize_url(server_url)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as e:
        engine.dispose()
        raise DatabaseUnreachable(f"PostgreSQL is not reachable at {server_url} ({e.orig})") from None
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
