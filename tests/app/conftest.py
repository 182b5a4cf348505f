"""Fixtures of the app's storage and API tests: every test that uses ``app`` (or a client)
runs twice, on SQLite and on PostgreSQL.

PostgreSQL: ``INTERFORMER_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) names a server and a database to connect to;
the tests create a fresh database ``interformer_test_<random>`` there for the session (migrated
by the app itself) and drop it at the end. An unreachable server is a failure, not a skip.

Each test gets a new app (its own DATA_DIR, the fake pyramid provider of the browser tests,
cheap password hashes, its own login rate-limit counters) on the session's database, emptied
before the test. Its test clients send the session's CSRF token on state-changing requests, as
the pages do (app_helpers.CsrfClient; ``client.csrf = False`` to send none).
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BROWSER_TESTS = HERE.parent / "browser"
if str(BROWSER_TESTS) not in sys.path:
    sys.path.insert(0, str(BROWSER_TESTS))

import fake_model  # noqa: E402
from scaleout_support import postgres_database  # noqa: E402
from app_helpers import ADMIN, ANNOTATOR, ANNOTATOR2, FAST_HASH, REVIEWER, CsrfClient, login  # noqa: E402

from webapp import close_app, create_app  # noqa: E402
from webapp.accounts import create_user  # noqa: E402
from webapp.db import Base, get_db  # noqa: E402
from webapp.models import Role  # noqa: E402

@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'app.sqlite3'}"
    else:
        yield from postgres_database()


@pytest.fixture(scope="session")
def pyramid_provider() -> fake_model.FakePyramidProvider:
    return fake_model.FakePyramidProvider()


def _empty_tables(app) -> None:
    with get_db(app).engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def make_app(database_url, tmp_path, pyramid_provider):
    """``make_app(**config)``: an app on the session's database (emptied on the first call)."""
    apps = []

    def make(**config):
        cfg = {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "DATA_DIR": tmp_path / "data",
            "DATABASE_URL": database_url,
            "PYRAMID_PROVIDER": pyramid_provider,
            "PASSWORD_HASH_METHOD": FAST_HASH,
            "RATE_LIMIT_PREFIX": f"interformer-test:{secrets.token_hex(6)}:",  # own counters (REDIS_URL)
            **config,
        }
        a = create_app(cfg)
        a.test_client_class = CsrfClient  # sends the CSRF token like the pages' JavaScript
        if not apps:
            _empty_tables(a)
        apps.append(a)
        return a

    yield make
    for a in apps:
        close_app(a)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def users(app) -> dict:
    """alice (admin), bob and carol (annotators), rita (reviewer): name -> user id."""
    with get_db(app).session() as s:
        out = {}
        for (name, password), role in ((ADMIN, Role.ADMIN), (ANNOTATOR, Role.ANNOTATOR), (ANNOTATOR2, Role.ANNOTATOR),
                                       (REVIEWER, Role.REVIEWER)):
            out[name] = create_user(s, name, password, role, FAST_HASH).id
    return out


@pytest.fixture
def admin_client(app, users):
    return login(app.test_client(), *ADMIN)


@pytest.fixture
def annotator_client(app, users):
    return login(app.test_client(), *ANNOTATOR)


@pytest.fixture
def anon_client(app):
    return app.test_client()
