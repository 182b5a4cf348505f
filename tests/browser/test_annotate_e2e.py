"""The annotator end to end in headless chromium, with the fake model (tests/browser/fake_model.py).

* The admin logs in, creates a project, uploads three images (a filled disk on a flat
  background each) and sees the precompute finish over Socket.IO; an annotator opens the
  first image from the annotate page, clicks inside the disk with the mouse, sees a mask,
  accepts (Enter), submits and lands on the next image (prefetched meanwhile); the admin
  exports COCO and the exported mask equals the browser's pixel for pixel. The page at
  1280x720 with the mask is screenshotted (to docs/img/annotator.png with
  ``INTERFORMER_UPDATE_SCREENSHOTS=1``, else to the test's temporary folder, so that test runs
  leave the committed file alone).
* The annotator's tools: undo/redo, classes by key, hide, delete, a failed save (HTTP 500,
  then the network down) retried and shown until it goes through, and submit refused while
  an object is unsaved.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from live_server import csrf_headers, log_in, log_out, serve_with_users
from PIL import Image
from pycocotools import mask as coco_mask


REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "img" / "annotator.png"
W, H = 320, 240
CENTRES = [(120, 100), (200, 140), (160, 120)]
RADIUS = 45


def disk_image(cx: int, cy: int, seed: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = (70 + 10 * seed, 110, 80)  # flat background
    rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= RADIUS**2] = (230, 60, 40)  # the object
    return rgb


def unpack(m: dict) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(m["base64"]), np.uint8))
    return bits[: m["height"] * m["width"]].reshape(m["height"], m["width"]).astype(bool)


@pytest.fixture
def app_url(make_server, model_dir, tmp_path) -> str:
    data_dir = tmp_path / "data"
    url = serve_with_users(make_server, data_dir, model_dir)
    return url


def open_annotator(page) -> dict:
    status = page.evaluate("window.__annotate.ready")
    assert status["ok"], (status, page.console_log)
    return page.evaluate("window.__annotate.state()")


def test_annotate_end_to_end(app_url, page, tmp_path):
    url = app_url
    page.set_viewport_size({"width": 1280, "height": 720})
    files = []
    for i, (cx, cy) in enumerate(CENTRES):
        f = tmp_path / f"disk{i}.png"
        Image.fromarray(disk_image(cx, cy, i)).save(f)
        files.append(str(f))

    # -- the admin: project, upload, live precompute ---------------------------------------
    log_in(page, url, "admin", "admin-password")
    page.wait_for_url(url + "/admin")
    page.fill("input[name=name]", "Disks")
    page.fill("textarea[name=classes]", "disk, background thing")
    page.click("text=Create project")
    page.wait_for_url("**/admin/projects/*")
    pid = int(page.url.rsplit("/", 1)[1])
    page.set_input_files("#upload-files", files)
    page.click("#upload-form button")
    page.wait_for_function(
        "document.getElementById('progress-text').textContent.startsWith('3 of 3 images ready')", timeout=30_000
    )
    assert page.text_content("#upload-status") == "3 added, 0 duplicates, 0 rejected"
    assert page.get_attribute("#annotate-link", "href") == f"/annotate/{pid}"
    log_out(page)

    # -- the annotator ---------------------------------------------------------------------
    log_in(page, url, "ann", "ann-password")
    page.wait_for_url(url + "/annotate")
    page.click("#annotate-projects >> text=Disks")
    page.wait_for_url(f"{url}/annotate/{pid}")
    st = open_annotator(page)
    images = page.evaluate(f"fetch('/api/projects/{pid}/images').then(r => r.json())")["images"]
    ids = [im["id"] for im in images]
    assert st["imageId"] == ids[0]
    assert page.url == f"{url}/annotate/{pid}/{ids[0]}"
    assert st["geometry"]["imageW"] == W and st["geometry"]["imageH"] == H
    # layout at 1280x720: no scrolling, a large stage beside the side panel
    layout = page.evaluate("""() => ({sw: document.documentElement.scrollWidth,
        sh: document.documentElement.scrollHeight,
        stage: document.getElementById('stage').getBoundingClientRect().toJSON(),
        side: document.querySelector('.side').getBoundingClientRect().toJSON()})""")
    assert layout["sw"] <= 1280 and layout["sh"] <= 720, layout
    assert layout["stage"]["width"] >= 800 and layout["stage"]["height"] >= 500, layout
    assert layout["side"]["right"] <= 1280

    # a real left click in the middle of the first disk
    cx, cy = CENTRES[0]
    x, y = page.evaluate(f"window.__annotate.imageToClient({cx}, {cy})")
    page.mouse.click(x, y)
    page.wait_for_function("window.__annotate.state().clicks.length === 1")
    page.evaluate("window.__annotate.saved()")
    st = page.evaluate("window.__annotate.state()")
    assert st["clicks"] == [{"x": cx, "y": cy, "positive": True}]
    shown = unpack(st["mask"])
    assert shown.shape == (H, W)
    assert shown[cy, cx] and shown.sum() > 200
    assert not shown[0, 0] and not shown[H - 1, W - 1]
    shot = SCREENSHOT if os.environ.get("INTERFORMER_UPDATE_SCREENSHOTS") == "1" else tmp_path / "annotator.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size < 300_000

    page.focus("#stage")
    page.keyboard.press("Enter")  # accept
    page.wait_for_function("(() => { const o = window.__annotate.state().objects;"
                           " return o.length === 1 && o[0].save === 'saved'; })()")
    st = page.evaluate("window.__annotate.state()")
    assert st["clicks"] == [] and not unpack(st["mask"]).any()
    assert (unpack(st["objects"][0]["mask"]) == shown).all()
    assert page.text_content("#save-status") == "Every object is saved."
    assert st["prefetched"] == ids[1]  # the next image was fetched while we worked

    page.click("#submit")
    page.wait_for_function(f"window.__annotate.state().imageId === {ids[1]}")
    # the address follows (history.replaceState once the image is loaded)
    page.wait_for_function(f"location.pathname === '/annotate/{pid}/{ids[1]}'")
    assert not [m for m in page.console_log if "error" in m.lower()], page.console_log
    foreign = [u for u in page.requested if not u.startswith((url + "/", "data:", "blob:"))]
    assert not foreign
    log_out(page)

    # -- the admin exports: the mask is the one the browser showed -------------------------
    log_in(page, url, "admin", "admin-password")
    for seg in ("rle", "polygons"):
        resp = page.request.get(f"{url}/api/projects/{pid}/export/coco.json?segmentation={seg}")
        assert resp.ok
        coco = json.loads(resp.body())
        anns = [a for a in coco["annotations"] if a["image_id"] == ids[0]] if seg == "rle" else coco["annotations"]
        assert len(coco["annotations"]) == 1 and len(anns) == 1
        ann = anns[0]
        if seg == "rle":
            exported = coco_mask.decode({"size": ann["segmentation"]["size"],
                                         "counts": ann["segmentation"]["counts"].encode()}).astype(bool)
        else:
            rles = coco_mask.frPyObjects(ann["segmentation"], H, W)
            exported = coco_mask.decode(coco_mask.merge(rles)).astype(bool)
        assert exported.shape == (H, W)
        assert (exported == shown).all(), f"{seg}: {(exported != shown).sum()} pixels differ"
    assert ann["area"] == int(shown.sum())
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert cats[ann["category_id"]] == "disk"
    submitted = page.evaluate(f"fetch('/api/images/{ids[0]}').then(r => r.json())")["image"]
    assert submitted["annotation_status"] == "submitted"


def test_annotate_tools_and_failed_saves(app_url, page, tmp_path):
    url = app_url
    page.set_viewport_size({"width": 1280, "height": 720})
    log_in(page, url, "admin", "admin-password")
    csrf = csrf_headers(page.request, url)
    resp = page.request.post(f"{url}/api/projects", data={"name": "Tools", "classes": ["a", "b", "c"]}, headers=csrf)
    assert resp.status == 201, resp.text()
    project = resp.json()["project"]
    buf = io.BytesIO()
    Image.fromarray(disk_image(*CENTRES[0], 0)).save(buf, "PNG")
    up = page.request.post(f"{url}/api/projects/{project['id']}/images", headers=csrf,
                           multipart={"files": {"name": "one.png", "mimeType": "image/png", "buffer": buf.getvalue()}})
    assert up.status == 201
    page.goto(f"{url}/annotate/{project['id']}")
    st = open_annotator(page)  # waits for the features if they are not ready yet
    assert st["imageId"] is not None

    ann = "window.__annotate"
    cx, cy = CENTRES[0]

    # zoom with the wheel about the cursor, pan by dragging (no click), click after both
    scale = st["viewport"]["scale"]
    x, y = page.evaluate(f"{ann}.imageToClient({cx}, {cy})")
    page.mouse.move(x, y)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"{ann}.state().viewport.scale > {scale * 1.2}")
    x2, y2 = page.evaluate(f"{ann}.imageToClient({cx}, {cy})")
    assert abs(x2 - x) < 1 and abs(y2 - y) < 1
    vp = page.evaluate(f"{ann}.state()")["viewport"]
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 30, y - 20, steps=5)
    page.mouse.up()
    moved = page.evaluate(f"{ann}.state()")
    assert moved["clicks"] == []
    assert abs(moved["viewport"]["offsetX"] - vp["offsetX"] + 30) < 1e-6
    assert abs(moved["viewport"]["offsetY"] - vp["offsetY"] + 20) < 1e-6
    x, y = page.evaluate(f"{ann}.imageToClient({cx - 10}, {cy + 5})")
    page.mouse.click(x, y, button="right")
    page.wait_for_function(f"{ann}.state().clicks.length === 1")
    assert page.evaluate(f"{ann}.state()")["clicks"] == [{"x": cx - 10, "y": cy + 5, "positive": False}]
    page.keyboard.press("Escape")  # reset
    page.wait_for_function(f"{ann}.state().clicks.length === 0")
    page.keyboard.press("f")  # fit again
    assert page.evaluate(f"{ann}.state()")["viewport"]["scale"] == scale
    assert page.evaluate(f"{ann}.click({cx}, {cy}, true)") == 1
    assert page.evaluate(f"{ann}.click({cx + 30}, {cy}, false)") == 2
    two = page.evaluate(f"{ann}.state()")["mask"]
    page.keyboard.press("Control+z")
    page.wait_for_function(f"{ann}.state().clicks.length === 1")
    assert page.evaluate(f"{ann}.state()")["canRedo"]
    page.keyboard.press("Control+Shift+Z")
    page.wait_for_function(f"{ann}.state().clicks.length === 2")
    assert page.evaluate(f"{ann}.state()")["mask"] == two

    # classes by key, outline by key, the shortcut sheet
    page.keyboard.press("3")
    assert page.evaluate(f"{ann}.state()")["classIndex"] == 2
    assert page.input_value("#class-select") == "2"
    page.keyboard.press("o")
    assert page.evaluate(f"{ann}.state()")["outline"] is True
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")

    # the first save fails (500), the second finds the network down, the third goes through
    attempts = []

    def flaky(route):
        attempts.append(route.request.method)
        if len(attempts) == 1:
            route.fulfill(status=500, content_type="application/json", body='{"error": "database is down"}')
        elif len(attempts) == 2:
            route.abort()
        else:
            route.continue_()

    page.route("**/api/images/*/objects",
               lambda route: flaky(route) if route.request.method == "POST" else route.continue_())
    page.keyboard.press("Enter")
    page.wait_for_function(f"{ann}.state().objects[0]?.save === 'retrying'")
    assert "database is down" in page.text_content("#object-list li .save")
    page.evaluate(f"{ann}.saved()")  # resolves once the retries got it through (1 s, then 2 s later)
    st = page.evaluate(f"{ann}.state()")
    assert len(attempts) == 3 and st["objects"][0]["save"] == "saved"
    obj = st["objects"][0]
    server = page.evaluate(f"fetch('/api/objects/{obj['serverId']}').then(r => r.json())")["object"]
    assert server["class"] == "c" and len(server["clicks"]) == 2 and server["time_spent"] > 0
    assert [c["positive"] for c in server["clicks"]] == [True, False]
    decoded = coco_mask.decode({"size": server["rle"]["size"], "counts": server["rle"]["counts"].encode()}).astype(bool)
    assert (decoded == unpack(obj["mask"])).all()
    page.unroute("**/api/images/*/objects")

    # the class of an accepted object changes from the object list (the server keeps the mask)
    class_a = next(c["id"] for c in project["classes"] if c["name"] == "a")
    page.select_option("#object-list li:nth-child(1) select.object-class", str(class_a))
    page.wait_for_function(f"{ann}.state().objects[0].classId === {class_a} && "
                           "!document.querySelector('#object-list li select.object-class').disabled")
    server = page.evaluate(f"fetch('/api/objects/{obj['serverId']}').then(r => r.json())")["object"]
    assert server["class"] == "a" and \
        (coco_mask.decode({"size": server["rle"]["size"], "counts": server["rle"]["counts"].encode()}) == decoded).all()

    # a refused save stays in the list as failed, and blocks submit
    page.route("**/api/images/*/objects", lambda route: route.fulfill(status=400, content_type="application/json",
                                                                      body='{"error": "unknown label class"}')
               if route.request.method == "POST" else route.continue_())
    page.evaluate(f"{ann}.click({cx}, {cy}, true)")
    page.evaluate(f"{ann}.accept()")
    page.evaluate(f"{ann}.saved()")
    st = page.evaluate(f"{ann}.state()")
    assert [o["save"] for o in st["objects"]] == ["saved", "failed"]
    assert "could not be saved" in page.text_content("#save-status")
    assert page.evaluate(f"{ann}.submit()")["ok"] is False
    page.unroute("**/api/images/*/objects")

    # hide, then delete the failed one (never saved) and the saved one (deleted on the server)
    page.click("#object-list li:nth-child(1) >> text=Hide")
    assert page.evaluate(f"{ann}.state()")["objects"][0]["hidden"] is True
    page.click("#object-list li:nth-child(2) >> text=Delete")
    page.wait_for_function(f"{ann}.state().objects.length === 1")
    page.click("#object-list li:nth-child(1) >> text=Delete")
    page.wait_for_function(f"{ann}.state().objects.length === 0")
    objs = page.evaluate(f"fetch('/api/images/{st['imageId']}/objects').then(r => r.json())")["objects"]
    assert objs == []

    # the browser's local store refuses the outbox copy (quota): the object is still sent to
    # the server, and the user is told that the crash protection is missing
    page.evaluate("() => { window.__put = IDBObjectStore.prototype.put; IDBObjectStore.prototype.put = function () "
                  "{ throw new DOMException('no space left', 'QuotaExceededError'); }; }")
    page.evaluate(f"{ann}.click({cx}, {cy}, true)")
    assert page.evaluate(f"{ann}.accept()") is not None
    assert "could not keep a local copy" in page.text_content("#status")
    page.evaluate("() => { IDBObjectStore.prototype.put = window.__put; }")
    page.evaluate(f"{ann}.saved()")
    assert [o["save"] for o in page.evaluate(f"{ann}.state()")["objects"]] == ["saved"]
    assert len(page.evaluate(f"fetch('/api/images/{st['imageId']}/objects').then(r => r.json())")["objects"]) == 1
    page.click("#object-list li:nth-child(1) >> text=Delete")
    page.wait_for_function(f"{ann}.state().objects.length === 0")
    res = page.evaluate(f"{ann}.submit()")
    assert res == {"ok": True, "next": None}
    assert page.evaluate(f"{ann}.state()")["done"] is True
    assert "Every image" in page.text_content("#stage-message")
