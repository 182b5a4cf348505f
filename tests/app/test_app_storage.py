"""The schema and the stores: the Alembic migrations build exactly the typed models' schema
(SQLite and PostgreSQL) and downgrade cleanly; blob keys cannot leave the store; mask and
polygon codecs on random masks."""

from __future__ import annotations

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from webapp.db import Base, Database, get_db
from webapp.masks import MaskError, counts_from_string, decode, encode
from webapp.polygons import mask_to_polygons, polygons_to_mask
from webapp.storage import LocalBlobStore


def test_migrations_match_the_models(app):
    db = get_db(app)
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
        tables = set(inspect(conn).get_table_names())
    assert {"users", "projects", "label_classes", "images", "objects", "alembic_version"} <= tables


def test_downgrade_and_upgrade_again(tmp_path):
    from alembic import command
    from alembic.config import Config

    from webapp.db import MIGRATIONS_DIR

    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    db.upgrade()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    with db.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    db.upgrade()
    with db.engine.connect() as conn:
        assert "objects" in inspect(conn).get_table_names()
    db.dispose()


@pytest.mark.parametrize("key", ["../x", "a/../../b", "/abs", "a//b", "", ".hidden", "a/.b", "a\\b", "a/b/", "ä"])
def test_blob_keys_cannot_leave_the_store(tmp_path, key):
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_local_blob_store(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    store.put("images/1/abc.png", b"data")
    assert store.get("images/1/abc.png") == b"data" and store.exists("images/1/abc.png")
    assert store.local_path("images/1/abc.png") == tmp_path / "blobs" / "images" / "1" / "abc.png"
    store.put("images/1/abc.png", b"new")
    assert store.get("images/1/abc.png") == b"new"
    store.delete("images/1/abc.png")
    assert not store.exists("images/1/abc.png") and store.local_path("images/1/abc.png") is None
    with pytest.raises(KeyError):
        store.get("images/1/abc.png")
    assert not list((tmp_path / "blobs").rglob("*.tmp"))


def test_polygons_reproduce_random_masks_exactly():
    rng = np.random.default_rng(0)
    for t in range(120):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = rng.random((h, w)) < (0.2 + 0.6 * (t % 3) / 2)
        polys = mask_to_polygons(m)
        assert (polygons_to_mask(polys, h, w) == m).all(), t
        assert all(all(float(c).is_integer() for c in p) for p in polys)
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []
    assert mask_to_polygons(np.ones((1, 1), bool)) == [[0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]]


def test_rle_codec_round_trip_and_rejects_bad_strings():
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = rng.random((17, 23)) < 0.5
        assert (decode(encode(m), 17, 23) == m).all()
    for bad in ("~", "0" * 8 + "a", "o"):
        with pytest.raises(MaskError):
            counts_from_string(bad)
    with pytest.raises(MaskError):
        decode(encode(np.ones((3, 3), bool)), 4, 4)
