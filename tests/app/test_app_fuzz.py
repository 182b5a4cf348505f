"""A fuzz pass (hypothesis) over the upload and JSON API endpoints: random and malformed bodies
for object saves, drafts, settings, invites (make and accept), review decisions, object class
changes, logins and uploads. No answer may be a 5xx, and the objects saved before (by the
fuzzed user and by others) stay exactly as they were. Bounded: ``FUZZ_EXAMPLES`` examples per
endpoint (default 100, env ``INTERFORMER_FUZZ_EXAMPLES``), no deadline; on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from app_helpers import ADMIN, ANNOTATOR, ANNOTATOR2, REVIEWER, create_project, image_bytes, login, upload, wait_idle
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from webapp.db import get_db
from webapp.models import AnnotationObject

FUZZ_EXAMPLES = int(os.environ.get("INTERFORMER_FUZZ_EXAMPLES", "100"))
# Derandomized by default so that CI is reproducible (random runs found two real 500s: a zip
# member without a name and NUL characters on PostgreSQL; both are regression tests now).
# INTERFORMER_FUZZ_RANDOM=1 explores new examples on every run.
FUZZ_RANDOM = os.environ.get("INTERFORMER_FUZZ_RANDOM") == "1"
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=not FUZZ_RANDOM, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
H, W = 30, 40
MASK = {"size": [H, W], "counts": [H * 10, H * 5, H * 25]}

# -- strategies ----------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=12), c, max_size=6),
                           max_leaves=25)
ints = st.integers(-10, 10**6) | st.integers() | scalars


def shaped(keys: dict) -> st.SearchStrategy:
    """Dicts with some of the endpoint's real keys (values plausible or random) and junk keys."""
    return st.fixed_dictionaries({}, optional={k: v | json_values for k, v in keys.items()}).flatmap(
        lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=2).map(lambda extra: {**extra, **d}))


clicks = st.lists(st.fixed_dictionaries({}, optional={"x": ints, "y": ints, "positive": scalars, "t": ints}), max_size=8)
rle = st.fixed_dictionaries({}, optional={"size": st.lists(ints, max_size=3) | scalars,
                                          "counts": st.lists(st.integers(-5, 2000), max_size=12) | st.text(max_size=20)})
object_bodies = shaped({"class": st.sampled_from(["cat", "dog", "cow", ""]) , "class_id": ints, "rle": rle,
                        "mask_png": st.text(max_size=40), "clicks": clicks, "time_spent": ints,
                        "client_id": st.text(min_size=0, max_size=70)})
VALID_OBJECT = {"class": "cat", "rle": MASK, "clicks": [{"x": 12, "y": 5, "positive": True, "t": 0}], "time_spent": 3}


def _mutate(base: dict, key: str, value, drop: bool) -> dict:
    out = {k: v for k, v in base.items() if not (drop and k == key)}
    if not drop:
        out[key] = value
    return out


# a valid body with one field replaced, dropped or added: reaches every check of the parser
object_mutants = st.builds(_mutate, st.just(VALID_OBJECT),
                           st.sampled_from(["class", "class_id", "rle", "mask_png", "clicks", "time_spent", "client_id"]),
                           json_values | clicks | rle | st.text(min_size=8, max_size=64), st.booleans())
draft_bodies = shaped({"rev": ints, "clicks": clicks, "class_id": ints, "elapsed_ms": ints})
settings_bodies = shaped({"overlap": st.integers(-3, 60), "lock_timeout_s": ints, "gold_every": ints,
                          "batch_size": ints})
invite_bodies = shaped({"role": st.sampled_from(["annotator", "reviewer", "admin", "x"]), "count": st.integers(-2, 20),
                        "max_uses": ints, "expires_in_hours": ints, "project_id": ints})
review_bodies = shaped({"decision": st.sampled_from(["accept", "reject", "", "maybe"]), "comment": scalars})
credentials = shaped({"username": st.text(max_size=80), "password": st.text(max_size=80)})
raw_bodies = st.binary(max_size=300) | st.text(max_size=300).map(str.encode)


def body_kwargs(draw_json, raw: bytes | None) -> dict:
    """A request body: JSON (NaN and Infinity included), or raw bytes sent as JSON."""
    if raw is not None:
        return {"data": raw, "content_type": "application/json"}
    return {"data": json.dumps(draw_json, allow_nan=True), "content_type": "application/json"}


bodies = st.one_of(st.tuples(json_values, st.none()), st.tuples(st.none(), raw_bodies))


def _png_mutant(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data[: max(0, len(data) - cut)])
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    return bytes(b)


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name or "x"), data)
    return buf.getvalue()


PNG = image_bytes(24, 16, seed=77)
upload_files = st.lists(st.tuples(
    st.text(max_size=40),
    st.one_of(st.binary(max_size=600),
              st.builds(_png_mutant, st.just(PNG), st.integers(0, 200),
                        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6)),
              st.builds(_zip, st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=200) | st.just(PNG)),
                                       max_size=3)))), min_size=0, max_size=3)


# -- the world and its invariant -----------------------------------------------------------------


@pytest.fixture
def world(app, users, admin_client):
    p = create_project(admin_client)
    res = upload(admin_client, p["id"], {f"{i}.png": image_bytes(W, H, seed=100 + i) for i in range(3)}).get_json()
    ids = [r["image_id"] for r in res["results"]]
    wait_idle(app)
    bob = login(app.test_client(), *ANNOTATOR)
    carol = login(app.test_client(), *ANNOTATOR2)
    body = {"class": "cat", "rle": MASK, "clicks": [{"x": 12, "y": 5, "positive": True, "t": 0}], "time_spent": 3}
    for who, iid in ((bob, ids[0]), (carol, ids[1])):
        assert who.post(f"/api/images/{iid}/objects", json=body).status_code == 201
    # carol submits: a slot to review
    assert carol.post(f"/api/images/{ids[1]}/submit").status_code == 200
    with get_db(app).session() as s:
        aid = s.scalar(select(AnnotationObject.assignment_id).where(AnnotationObject.image_id == ids[1]))
    inv = admin_client.post("/api/invites", json={"count": 1, "max_uses": 100_000}).get_json()["invites"][0]
    w = {"app": app, "pid": p["id"], "iids": ids, "aid": aid, "token": inv["token"], "admin": admin_client,
         "bob": bob, "rita": login(app.test_client(), *REVIEWER), "anon": app.test_client()}
    w["before"] = snapshot(app)
    return w


def snapshot(app) -> dict[int, tuple]:
    with get_db(app).session() as s:
        return {o.id: (o.image_id, o.label_class_id, o.rle_counts, o.area, o.bbox, o.clicks, o.time_spent, o.author_id,
                       o.deleted_at) for o in s.scalars(select(AnnotationObject)).all()}


def check(world, resp, *ok_codes: int) -> None:
    event(f"HTTP {resp.status_code}")  # pytest --hypothesis-show-statistics shows the mix
    assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:300])
    if ok_codes:
        assert resp.status_code in ok_codes, (resp.status_code, resp.get_data(as_text=True)[:300])
    after = snapshot(world["app"])
    for oid, row in world["before"].items():
        assert after.get(oid) == row, f"object {oid} changed"


def _maybe_json(resp) -> None:
    if resp.mimetype == "application/json":
        resp.get_json()  # a JSON answer parses


# -- the endpoints -------------------------------------------------------------------------------


@FUZZ
@given(b=bodies, image=st.integers(0, 2))
def test_fuzz_object_save(world, b, image):
    resp = world["bob"].post(f"/api/images/{world['iids'][image]}/objects", **body_kwargs(*b))
    check(world, resp, 200, 201, 400, 409)
    _maybe_json(resp)


@FUZZ
@given(body=object_bodies | object_mutants, image=st.integers(0, 2))
def test_fuzz_object_save_shaped(world, body, image):
    resp = world["bob"].post(f"/api/images/{world['iids'][image]}/objects", **body_kwargs(body, None))
    check(world, resp, 200, 201, 400, 409)


@FUZZ
@given(body=draft_bodies | json_values, image=st.integers(0, 2))
def test_fuzz_drafts(world, body, image):
    resp = world["bob"].put(f"/api/images/{world['iids'][image]}/draft", **body_kwargs(body, None))
    check(world, resp, 200, 400, 409)
    check(world, world["bob"].get(f"/api/images/{world['iids'][image]}/draft"), 200)


@FUZZ
@given(body=settings_bodies | json_values)
def test_fuzz_settings(world, body):
    resp = world["admin"].patch(f"/api/projects/{world['pid']}/settings", **body_kwargs(body, None))
    check(world, resp, 200, 400)


@FUZZ
@given(body=invite_bodies | json_values, accept=credentials | json_values)
def test_fuzz_invites(world, body, accept):
    check(world, world["admin"].post("/api/invites", **body_kwargs(body, None)), 201, 400, 404)
    resp = world["anon"].post(f"/api/invites/{world['token']}/accept", **body_kwargs(accept, None))
    check(world, resp, 201, 400)


@FUZZ
@given(body=review_bodies | json_values, who=st.sampled_from(["rita", "admin"]))
def test_fuzz_review(world, body, who):
    resp = world[who].post(f"/api/assignments/{world['aid']}/review", **body_kwargs(body, None))
    check(world, resp, 200, 400, 409)


@FUZZ
@given(b=bodies, form=st.dictionaries(st.sampled_from(["username", "password", "next", "x"]), st.text(max_size=60)))
def test_fuzz_login(world, b, form):
    anon = world["app"].test_client()
    check(world, anon.post("/api/auth/login", **body_kwargs(*b)), 200, 400, 401, 429)
    check(world, anon.post("/login", data=form), 302, 400, 401, 429)  # 400: NUL characters


@FUZZ
@given(files=upload_files)
def test_fuzz_upload(world, files):
    data = {"files": [(io.BytesIO(content), name) for name, content in files]}
    resp = world["admin"].post(f"/api/projects/{world['pid']}/images", data=data, content_type="multipart/form-data")
    check(world, resp, 200, 201, 400, 422)
    for r in resp.get_json().get("results", []):
        assert r["status"] in ("added", "duplicate", "rejected") and isinstance(r["message"], str)
