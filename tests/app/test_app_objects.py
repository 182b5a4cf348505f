"""Projects, saving accepted objects (RLE or PNG mask, clicks, time), listing, deleting
(kept in the database), submitting an image and getting the next one. On SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from app_helpers import ANNOTATOR, ANNOTATOR2, create_project, image_bytes, login, upload, wait_idle
from PIL import Image
from pycocotools import mask as coco_mask

from webapp.db import get_db
from webapp.masks import decode, encode
from webapp.models import AnnotationObject

H, W = 30, 40
# pycocotools' decode under numpy 2 (used here as an independent reader)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def uncompressed_rle(m: np.ndarray) -> dict:
    flat = m.T.reshape(-1).astype(np.uint8)  # column-major
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [m.shape[0], m.shape[1]], "counts": counts}


def png_b64(m: np.ndarray, mode: str = "L") -> str:
    buf = io.BytesIO()
    arr = np.where(m, 255, 0).astype(np.uint8)
    if mode == "RGBA":
        rgba = np.zeros(m.shape + (4,), np.uint8)
        rgba[..., 0] = 200
        rgba[..., 3] = arr
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    else:
        Image.fromarray(arr, "L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def disk(cx, cy, r) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture
def image_id(app, admin_client):
    p = create_project(admin_client, classes=["cat", "dog"])
    resp = upload(admin_client, p["id"], {"a.png": image_bytes(W, H, seed=1)})
    wait_idle(app)
    return resp.get_json()["results"][0]["image_id"]


CLICKS = [{"x": 10, "y": 12.5, "positive": True, "t": 0}, {"x": 3, "y": 4, "positive": False, "t": 850.5}]


def test_save_list_get_and_delete_objects(app, image_id, users):
    bob = login(app.test_client(), *ANNOTATOR)
    m1, m2, m3 = disk(10, 10, 6), disk(30, 20, 5) & ~disk(30, 20, 2), disk(5, 25, 3) | disk(35, 5, 3)
    compressed = coco_mask.encode(np.asfortranarray(m2.astype(np.uint8)))["counts"].decode()
    bodies = [
        {"class": "cat", "rle": uncompressed_rle(m1), "clicks": CLICKS, "time_spent": 4.25},
        {"class_id": None, "class": "dog", "rle": {"size": [H, W], "counts": compressed}, "clicks": [], "time_spent": 0},
        {"class": "cat", "mask_png": png_b64(m3, "RGBA"), "clicks": CLICKS[:1], "time_spent": 1},
    ]
    bodies[1].pop("class_id")
    saved = []
    for body in bodies:
        resp = bob.post(f"/api/images/{image_id}/objects", json=body)
        assert resp.status_code == 201, resp.get_json()
        saved.append(resp.get_json()["object"])
    for o, m in zip(saved, (m1, m2, m3)):
        assert (decode(o["rle"]["counts"], H, W) == m).all()
        assert o["rle"]["size"] == [H, W] and o["area"] == int(m.sum())
        assert o["bbox"] == coco_mask.toBbox(coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))).tolist()
        assert o["author"] == "bob" and o["author_id"] == users["bob"]
    assert saved[0]["clicks"] == [{"x": 10.0, "y": 12.5, "positive": True, "t": 0.0},
                                  {"x": 3.0, "y": 4.0, "positive": False, "t": 850.5}]
    assert saved[0]["time_spent"] == 4.25 and saved[0]["class"] == "cat" and saved[0]["category_id"] == 1
    assert saved[1]["class"] == "dog" and saved[1]["category_id"] == 2

    listed = bob.get(f"/api/images/{image_id}/objects").get_json()["objects"]
    assert listed == saved
    assert bob.get(f"/api/objects/{saved[0]['id']}").get_json()["object"] == saved[0]

    carol = login(app.test_client(), *ANNOTATOR2)
    resp = carol.delete(f"/api/objects/{saved[0]['id']}")
    assert resp.status_code == 403 and "author or an admin" in resp.get_json()["error"]
    assert bob.delete(f"/api/objects/{saved[0]['id']}").get_json() == {"deleted": saved[0]["id"]}
    assert bob.delete(f"/api/objects/{saved[0]['id']}").status_code == 404
    assert bob.get(f"/api/objects/{saved[0]['id']}").status_code == 404
    assert [o["id"] for o in bob.get(f"/api/images/{image_id}/objects").get_json()["objects"]] == [saved[1]["id"], saved[2]["id"]]
    with get_db(app).session() as s:  # deleted means hidden, never lost
        row = s.get(AnnotationObject, saved[0]["id"])
        assert row is not None and row.deleted_at is not None and row.deleted_by_id == users["bob"]
        assert (decode(row.rle_counts, H, W) == m1).all() and row.clicks == saved[0]["clicks"]
    admin = login(app.test_client(), "alice", "alice-password")
    assert admin.delete(f"/api/objects/{saved[1]['id']}").status_code == 200


def test_change_the_class_of_an_accepted_object(app, image_id, users):
    bob = login(app.test_client(), *ANNOTATOR)
    m = disk(12, 14, 6)
    body = {"class": "cat", "rle": uncompressed_rle(m), "clicks": CLICKS, "time_spent": 2}
    o = bob.post(f"/api/images/{image_id}/objects", json=body).get_json()["object"]
    pid = bob.get(f"/api/images/{image_id}").get_json()["image"]["project_id"]
    dog = next(c for c in bob.get(f"/api/projects/{pid}").get_json()["project"]["classes"] if c["name"] == "dog")
    resp = bob.patch(f"/api/objects/{o['id']}", json={"class": "dog"})
    assert resp.status_code == 200, resp.get_json()
    changed = resp.get_json()["object"]
    assert changed["class"] == "dog" and changed["category_id"] == 2
    assert changed["rle"] == o["rle"] and changed["clicks"] == o["clicks"]  # only the class changes
    assert bob.get(f"/api/objects/{o['id']}").get_json()["object"]["class"] == "dog"
    assert bob.patch(f"/api/objects/{o['id']}", json={"class_id": dog["id"]}).get_json()["object"]["class"] == "dog"
    resp = bob.patch(f"/api/objects/{o['id']}", json={"class": "horse"})
    assert resp.status_code == 400 and "unknown label class 'horse'" in resp.get_json()["error"]
    resp = bob.patch(f"/api/objects/{o['id']}", json={"rle": o["rle"]})
    assert resp.status_code == 400 and "class_id" in resp.get_json()["error"]
    carol = login(app.test_client(), *ANNOTATOR2)
    resp = carol.patch(f"/api/objects/{o['id']}", json={"class": "cat"})
    assert resp.status_code == 403 and "author or an admin" in resp.get_json()["error"]
    assert bob.patch("/api/objects/99999", json={"class": "cat"}).status_code == 404
    assert bob.post(f"/api/images/{image_id}/submit").status_code == 200
    resp = bob.patch(f"/api/objects/{o['id']}", json={"class": "cat"})  # submitted work is frozen
    assert resp.status_code == 409 and "reviewer sends it back" in resp.get_json()["error"]
    admin = login(app.test_client(), "alice", "alice-password")
    assert admin.patch(f"/api/objects/{o['id']}", json={"class": "cat"}).get_json()["object"]["class"] == "cat"


def test_bad_object_payloads_are_400_with_a_reason(app, image_id, users):
    bob = login(app.test_client(), *ANNOTATOR)
    good = {"class": "cat", "rle": uncompressed_rle(disk(10, 10, 4)), "clicks": CLICKS, "time_spent": 2}
    cases = {
        "expected a JSON object": None,
        "unknown label class 'bird'": {**good, "class": "bird"},
        '"class" is missing': {k: v for k, v in good.items() if k != "class"},
        "exactly one of": {**good, "mask_png": png_b64(disk(1, 1, 1))},
        "exactly one of ": {k: v for k, v in good.items() if k != "rle"},
        "the RLE size is [10, 10]": {**good, "rle": {"size": [10, 10], "counts": [100]}},
        "add up to 1199 pixels": {**good, "rle": {"size": [H, W], "counts": [1199]}},
        "non-negative integers": {**good, "rle": {"size": [H, W], "counts": [1300, -100]}},
        "invalid character": {**good, "rle": {"size": [H, W], "counts": "ab~~"}},
        "ends in the middle": {**good, "rle": {"size": [H, W], "counts": "o"}},
        "the mask is empty": {**good, "rle": {"size": [H, W], "counts": [H * W]}},
        "the mask PNG is 5x5": {k: v for k, v in {**good, "mask_png": png_b64(np.ones((5, 5), bool))}.items() if k != "rle"},
        "not valid base64": {k: v for k, v in {**good, "mask_png": "%%%"}.items() if k != "rle"},
        "not a decodable PNG": {k: v for k, v in {**good, "mask_png": base64.b64encode(b"GIF89a").decode()}.items() if k != "rle"},
        "click 1: x, y must be": {**good, "clicks": [CLICKS[0], {"x": 99, "y": 1, "positive": True, "t": 1}]},
        'click 0: "positive"': {**good, "clicks": [{"x": 1, "y": 1, "positive": 1, "t": 1}]},
        'click 0: "t"': {**good, "clicks": [{"x": 1, "y": 1, "positive": True, "t": -5}]},
        '"clicks" must be a list': {**good, "clicks": "none"},
        '"time_spent"': {**good, "time_spent": "long"},
        '"time_spent" ': {**good, "time_spent": -1},
    }
    for expected, body in cases.items():
        resp = bob.post(f"/api/images/{image_id}/objects", json=body) if body is not None else \
            bob.post(f"/api/images/{image_id}/objects", data="x", content_type="text/plain")
        assert resp.status_code == 400, (expected, resp.get_json())
        assert expected.strip() in resp.get_json()["error"], (expected, resp.get_json())
    assert bob.post("/api/images/9999/objects", json=good).status_code == 404
    assert bob.get(f"/api/images/{image_id}/objects").get_json()["objects"] == []


def test_stored_rle_is_canonical(app, image_id, users):
    bob = login(app.test_client(), *ANNOTATOR)
    m = disk(20, 15, 7)
    o = bob.post(f"/api/images/{image_id}/objects",
                 json={"class": "dog", "rle": uncompressed_rle(m), "clicks": [], "time_spent": 1}).get_json()["object"]
    assert o["rle"]["counts"] == encode(m)
    assert (coco_mask.decode({"size": [H, W], "counts": o["rle"]["counts"].encode()}) == m).all()


def test_projects_create_list_and_validation(app, admin_client, users):
    p = create_project(admin_client, "Birds", classes=["sparrow", {"name": "crow", "color": "#101010"}])
    assert [(c["name"], c["category_id"]) for c in p["classes"]] == [("sparrow", 1), ("crow", 2)]
    assert p["classes"][1]["color"] == "#101010" and p["model_id"] == "fake-interformer"
    assert p["decoder"] == {"model": "/api/playground/decoder.onnx", "manifest": "/api/playground/decoder.json"}
    for body, msg in [
        ({"name": "birds", "classes": ["x"]}, "exists already"),
        ({"name": "", "classes": ["x"]}, "1-200 characters"),
        ({"name": "N", "classes": []}, "at least one label class"),
        ({"name": "N", "classes": ["a", "A"]}, "listed twice"),
        ({"name": "N", "classes": [{"name": "a", "color": "red"}]}, "#rrggbb"),
        ({"name": "N", "classes": [""]}, "1-100 characters"),
    ]:
        resp = admin_client.post("/api/projects", json=body)
        assert resp.status_code == 400 and msg in resp.get_json()["error"], (body, resp.get_json())
    assert admin_client.post("/api/projects", data="x").status_code == 400
    bob = login(app.test_client(), *ANNOTATOR)
    assert [q["name"] for q in bob.get("/api/projects").get_json()["projects"]] == ["Birds"]
    assert bob.get(f"/api/projects/{p['id']}").get_json()["project"]["name"] == "Birds"
    assert bob.get("/api/projects/999").status_code == 404
    # the admin page form
    resp = admin_client.post("/admin/projects", data={"name": "Fish", "classes": "salmon, trout\npike"})
    assert resp.status_code == 302
    fish = next(q for q in admin_client.get("/api/projects").get_json()["projects"] if q["name"] == "Fish")
    assert [c["name"] for c in fish["classes"]] == ["salmon", "trout", "pike"]
    bad = admin_client.post("/admin/projects", data={"name": "Fish", "classes": "x"})
    assert bad.status_code == 400 and b"exists already" in bad.data
    assert b"Fish" in admin_client.get("/admin").data


def test_submit_and_next_image(app, admin_client, users):
    p = create_project(admin_client)
    ids = [r["image_id"] for r in upload(admin_client, p["id"], {f"{i}.png": image_bytes(seed=40 + i) for i in range(3)})
           .get_json()["results"]]
    wait_idle(app)
    bob = login(app.test_client(), *ANNOTATOR)
    nxt = bob.get(f"/api/projects/{p['id']}/next").get_json()["image"]
    assert nxt["id"] == ids[0] and nxt["urls"]["pyramid"] == f"/api/images/{ids[0]}/pyramid"
    assert bob.get(f"/api/projects/{p['id']}/next?after={ids[2]}").get_json()["image"]["id"] == ids[0]
    assert bob.get(f"/api/projects/{p['id']}/next?after=x").status_code == 400

    resp = bob.post(f"/api/images/{ids[1]}/submit").get_json()
    assert resp["image"]["annotation_status"] == "submitted" and resp["image"]["submitted_at"]
    assert resp["next"]["id"] == ids[2]
    assert bob.post(f"/api/images/{ids[1]}/submit").get_json()["image"]["annotation_status"] == "submitted"
    assert bob.post(f"/api/images/{ids[2]}/submit").get_json()["next"]["id"] == ids[0]
    assert bob.post(f"/api/images/{ids[0]}/submit").get_json()["next"] is None
    assert bob.get(f"/api/projects/{p['id']}/next").get_json()["image"] is None
    counts = admin_client.get(f"/api/projects/{p['id']}").get_json()["project"]["annotation"]
    assert counts == {"open": 0, "submitted": 3}
