"""Export round trip: every stored mask comes back pixel for pixel from the COCO JSON (RLE,
and polygons read the way COCO readers read them -- holes and every part kept) and from the
PNG zip (per-object masks, instance map, semantic map). On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from app_helpers import ANNOTATOR, create_project, image_bytes, login, upload, wait_idle
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def shapes(h: int, w: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[:h, :w]
    ring = ((xx - 20) ** 2 + (yy - 18) ** 2 <= 14**2) & ((xx - 20) ** 2 + (yy - 18) ** 2 > 6**2)  # one hole
    frame = np.zeros((h, w), bool)
    frame[2:30, 40:70] = True
    frame[6:12, 45:52] = False  # two holes
    frame[16:26, 55:66] = False
    frame[19:23, 59:62] = True  # an island inside a hole: a second part
    parts = np.zeros((h, w), bool)
    parts[h - 6:, :5] = True  # touches the left and bottom borders
    parts[h - 3:, w - 8:] = True  # touches the right border
    parts[35:38, 30:33] = True
    parts[38:40, 33:35] = True  # diagonal touch with the block above: a separate 4-connected part
    overlap = np.zeros((h, w), bool)
    overlap[10:40, 15:35] = True  # overlaps the ring
    return [ring, frame, parts, overlap]


def upload_rle(m: np.ndarray) -> dict:
    return {"size": list(m.shape), "counts": coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()}


@pytest.fixture
def annotated(app, admin_client, users):
    p = create_project(admin_client, "Export", classes=[{"name": "ring", "color": "#ff0000"}, {"name": "thing", "color": "#00ff00"}])
    ids = [r["image_id"] for r in upload(admin_client, p["id"], {"a.png": image_bytes(80, 48, seed=1),
                                                                "b.png": image_bytes(25, 30, seed=2),
                                                                "empty.png": image_bytes(10, 10, seed=3)})
           .get_json()["results"]]
    wait_idle(app)
    bob = login(app.test_client(), *ANNOTATOR)
    stored = {}  # object id -> (image id, class name, mask)
    masks_a = shapes(48, 80)
    for m, cls in zip(masks_a, ["ring", "thing", "thing", "ring"]):
        o = bob.post(f"/api/images/{ids[0]}/objects",
                     json={"class": cls, "rle": upload_rle(m), "clicks": [{"x": 1, "y": 2, "positive": True, "t": 0}],
                           "time_spent": 3.5}).get_json()["object"]
        stored[o["id"]] = (ids[0], cls, m)
    rng = np.random.default_rng(7)
    noise = rng.random((30, 25)) < 0.45  # many parts, holes and diagonal touches
    o = bob.post(f"/api/images/{ids[1]}/objects",
                 json={"class": "thing", "rle": upload_rle(noise), "clicks": [], "time_spent": 1}).get_json()["object"]
    stored[o["id"]] = (ids[1], "thing", noise)
    gone = bob.post(f"/api/images/{ids[1]}/objects",
                    json={"class": "ring", "rle": upload_rle(np.ones((30, 25), bool)), "clicks": [], "time_spent": 1})
    bob.delete(f"/api/objects/{gone.get_json()['object']['id']}")
    return {"project": p, "images": ids, "stored": stored}


def test_coco_json_round_trip(admin_client, annotated, tmp_path):
    p = annotated["project"]
    resp = admin_client.get(f"/api/projects/{p['id']}/export/coco.json")
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    coco = resp.get_json()
    assert coco["categories"] == [{"id": 1, "name": "ring", "supercategory": "", "color": "#ff0000"},
                                  {"id": 2, "name": "thing", "supercategory": "", "color": "#00ff00"}]
    assert [im["id"] for im in coco["images"]] == annotated["images"]
    assert {a["id"] for a in coco["annotations"]} == set(annotated["stored"])  # the deleted one is left out
    cat_name = {c["id"]: c["name"] for c in coco["categories"]}
    sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
    for a in coco["annotations"]:
        image_id, cls, m = annotated["stored"][a["id"]]
        h, w = sizes[image_id]
        assert a["image_id"] == image_id and cat_name[a["category_id"]] == cls and a["iscrowd"] == 0
        assert a["rle"]["size"] == [h, w]
        assert (coco_mask.decode({"size": [h, w], "counts": a["rle"]["counts"].encode()}) == m).all()
        assert isinstance(a["segmentation"], list) and all(len(poly) >= 8 for poly in a["segmentation"])
        from_polys = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(a["segmentation"], h, w)))
        assert (from_polys == m).all(), f"object {a['id']}: {(from_polys != m).sum()} pixels differ"
        assert a["area"] == int(m.sum())
        assert a["bbox"] == coco_mask.toBbox(coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))).tolist()
        assert a["attributes"]["author"] == "bob"
    _, frame, parts, _ = shapes(48, 80)
    frame_ann = next(a for a in coco["annotations"] if np.array_equal(annotated["stored"][a["id"]][2], frame))
    parts_ann = next(a for a in coco["annotations"] if np.array_equal(annotated["stored"][a["id"]][2], parts))
    assert len(frame_ann["segmentation"]) == 2 and len(parts_ann["segmentation"]) == 4  # every part is a polygon

    # pycocotools' COCO API reads the file as any COCO consumer would.
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    api = COCO(str(path))
    for ann_id, (_, _, m) in annotated["stored"].items():
        assert (api.annToMask(api.anns[ann_id]) == m).all()

    rle_variant = admin_client.get(f"/api/projects/{p['id']}/export/coco.json?segmentation=rle").get_json()
    for a in rle_variant["annotations"]:
        assert a["segmentation"] == a["rle"]
    assert admin_client.get(f"/api/projects/{p['id']}/export/coco.json?segmentation=x").status_code == 400


def test_png_zip_round_trip(admin_client, annotated):
    p = annotated["project"]
    resp = admin_client.get(f"/api/projects/{p['id']}/export/masks.zip")
    assert resp.status_code == 200 and resp.mimetype == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(resp.data))
    index = json.loads(zf.read("index.json"))
    assert [c["name"] for c in index["categories"]] == ["ring", "thing"]

    def png(name):
        return Image.open(io.BytesIO(zf.read(name)))

    by_image: dict[int, list[int]] = {}
    for oid, (iid, _, _) in sorted(annotated["stored"].items()):
        by_image.setdefault(iid, []).append(oid)
    assert [im["id"] for im in index["images"]] == annotated["images"]
    for entry in index["images"]:
        h, w = entry["height"], entry["width"]
        oids = by_image.get(entry["id"], [])
        assert [o["object_id"] for o in entry["objects"]] == oids
        want_inst = np.zeros((h, w), np.int64)
        want_sem = np.zeros((h, w), np.int64)
        for o in entry["objects"]:
            _, cls, m = annotated["stored"][o["object_id"]]
            assert o["class"] == cls
            got = np.asarray(png(o["file"]))
            assert got.shape == (h, w) and set(np.unique(got)) <= {0, 255}
            assert ((got > 0) == m).all()
            want_inst[m] = o["n"]
            want_sem[m] = o["category_id"]
        inst = png(entry["instances"])
        assert (np.asarray(inst).astype(np.int64) == want_inst).all()
        sem = png(entry["semantic"])
        assert sem.mode == "P" and (np.asarray(sem).astype(np.int64) == want_sem).all()
        assert sem.getpalette()[3:9] == [255, 0, 0, 0, 255, 0]
