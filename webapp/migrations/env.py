"""Alembic environment of the app's database.

The app runs ``upgrade head`` itself at start (``webapp.db.Database.upgrade``, which hands the
connection in ``config.attributes["connection"]``). For writing a new migration by hand::

    DATABASE_URL=sqlite:///var/dev.sqlite3 .venv/bin/alembic -c webapp/migrations/alembic.ini \
        revision --autogenerate -m "what changed"
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from webapp import models  # noqa: F401  (registers the tables on Base.metadata)
from webapp.db import Base, normalize_url

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = os.environ.get("DATABASE_URL") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set DATABASE_URL to the database to migrate")
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        _run(conn)
